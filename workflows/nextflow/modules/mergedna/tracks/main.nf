process MERGEDNA_TRACKS {
    tag "${meta.id}${meta.contig ? ':' + meta.contig : ''}"
    label 'process_medium'

    // No published container: set `container` for this process in your config (see score/main.nf).

    input:
    tuple val(meta), path(regions)              // BED of regions, or [] for the whole genome (--genome);
                                                // meta.contig (optional): only that contig (--contig)
    tuple val(meta2), path(fasta), path(index)  // index: .fai (+ .gzi if bgzip), or [] to build it here
    path model                                  // a model directory, or [] for the shipped model

    output:
    tuple val(meta), path("*.tokens.bed"), emit: bed
    tuple val(meta), path("*.bw"), emit: bigwig
    tuple val(meta), path("*.tracks.json"), emit: json
    path "versions.yml", emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: (meta.contig ? "${meta.id}.${meta.contig}" : "${meta.id}")
    def where = regions ? "--regions ${regions}" : '--genome'
    def contig = meta.contig ? "--contig ${meta.contig}" : ''
    def model_dir = model ? "--model ${model}" : ''
    """
    mergedna tracks \\
        --fasta ${fasta} \\
        ${where} \\
        ${contig} \\
        -o ${prefix} \\
        --threads ${task.cpus} \\
        ${model_dir} \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        mergedna: \$(mergedna --version)
    END_VERSIONS
    """

    stub:
    def prefix = task.ext.prefix ?: (meta.contig ? "${meta.id}.${meta.contig}" : "${meta.id}")
    """
    touch ${prefix}.tokens.bed ${prefix}.boundary.bw ${prefix}.token_length.bw
    echo '{}' > ${prefix}.tracks.json

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        mergedna: \$(mergedna --version)
    END_VERSIONS
    """
}
