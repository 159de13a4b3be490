#!/usr/bin/env nextflow
/*
 * Example pipeline for the MergeDNA modules (docs/pipelines.md): a VCF scored in N shards, in
 * parallel, joined into one bgzipped, indexed VCF; optionally learned-token tracks, one task
 * per contig, merged into one set.
 *
 *   nextflow run workflows/nextflow/main.nf                       # example data, 3 shards
 *   nextflow run workflows/nextflow/main.nf --vcf my.vcf.gz --fasta GRCh38.fa.gz --shards 50 -profile slurm
 */

include { MERGEDNA_SCORE       } from './modules/mergedna/score/main'
include { MERGEDNA_TRACKS      } from './modules/mergedna/tracks/main'
include { MERGEDNA_MERGETRACKS } from './modules/mergedna/mergetracks/main'
include { CONCAT_SHARDS        } from './modules/local/concat_shards'

workflow {
    def fasta_index = files("${params.fasta}.{fai,gzi}")
    def reference = Channel.value([[id: file(params.fasta).simpleName], file(params.fasta, checkIfExists: true), fasta_index])
    def model = params.model ? file(params.model, checkIfExists: true) : []

    // scatter: one task per shard, meta.shard / meta.shards -> --shard I/N
    def vcf = Channel.of([[id: file(params.vcf).simpleName], file(params.vcf, checkIfExists: true)])
    def shards = vcf.combine(Channel.of(1..params.shards))
        .map { meta, path, i -> [meta + [shard: i, shards: params.shards], path] }
    MERGEDNA_SCORE(shards, reference, model)

    // gather: the N outputs in shard order
    def joined = MERGEDNA_SCORE.out.vcf
        .map { meta, path -> [meta.subMap('id'), meta.shard, path] }
        .groupTuple(size: params.shards)
        .map { meta, order, paths -> [meta, [order, paths].transpose().sort { it[0] }.collect { it[1] }] }
    CONCAT_SHARDS(joined)

    if (params.tracks_regions || params.tracks_genome) {
        def regions = params.tracks_regions ? file(params.tracks_regions, checkIfExists: true) : []
        def contigs = params.tracks_regions
            ? Channel.fromPath(params.tracks_regions).splitCsv(sep: '\t')
                .filter { row -> !(row[0] =~ /^(#|track|browser)/) }.map { row -> row[0] }.unique()
            : Channel.fromPath("${params.fasta}.fai").splitCsv(sep: '\t').map { row -> row[0] }
        MERGEDNA_TRACKS(contigs.map { contig -> [[id: params.tracks_name, contig: contig], regions] }, reference, model)
        def parts = MERGEDNA_TRACKS.out.bed.join(MERGEDNA_TRACKS.out.bigwig).join(MERGEDNA_TRACKS.out.json)
            .map { meta, bed, bigwigs, json -> [bed, bigwigs, json].flatten() }
            .collect()
            .map { files -> [[id: params.tracks_name], files] }
        MERGEDNA_MERGETRACKS(parts, reference)
    }
}
