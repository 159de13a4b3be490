process MERGEDNA_MERGETRACKS {
    tag "${meta.id}"
    label 'process_single'

    input:
    tuple val(meta), path(parts, stageAs: 'parts/*')   // every file of every MERGEDNA_TRACKS part
    tuple val(meta2), path(fasta), path(index)

    output:
    tuple val(meta), path("${meta.id}.tokens.bed"), emit: bed
    tuple val(meta), path("${meta.id}.*.bw"), emit: bigwig
    tuple val(meta), path("${meta.id}.tracks.json"), emit: json
    path "versions.yml", emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    // a part is named by its prefix: the files PREFIX.tokens.bed, PREFIX.*.bw, PREFIX.tracks.json
    def prefixes = parts.findAll { it.name.endsWith('.tracks.json') }
                        .collect { "parts/" + (it.name - '.tracks.json') }.join(' ')
    """
    mergedna merge-tracks ${prefixes} --fasta ${fasta} -o ${meta.id} ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        mergedna: \$(mergedna --version)
    END_VERSIONS
    """

    stub:
    """
    touch ${meta.id}.tokens.bed ${meta.id}.boundary.bw ${meta.id}.token_length.bw
    echo '{}' > ${meta.id}.tracks.json

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        mergedna: \$(mergedna --version)
    END_VERSIONS
    """
}
