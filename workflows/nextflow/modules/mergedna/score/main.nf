process MERGEDNA_SCORE {
    tag "${meta.id}"
    label 'process_medium'

    // No published container: set `container` for this process in your config to an image with
    // mergedna installed (pip install of this repository), or run with mergedna on PATH.

    input:
    tuple val(meta), path(vcf)                  // meta.shard / meta.shards (optional): --shard I/N
    tuple val(meta2), path(fasta), path(index)  // index: .fai (+ .gzi if bgzip), or [] to build it here
    path model                                  // a model directory, or [] for the shipped model

    output:
    tuple val(meta), path("*.vcf.gz"), emit: vcf
    tuple val(meta), path("*.vcf.gz.tbi"), emit: tbi, optional: true
    path "versions.yml", emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: (meta.shard ? "${meta.id}.${meta.shard}-of-${meta.shards}" : "${meta.id}")
    def shard = meta.shard ? "--shard ${meta.shard}/${meta.shards}" : ''
    def model_dir = model ? "--model ${model}" : ''
    """
    mergedna score \\
        --fasta ${fasta} \\
        --vcf ${vcf} \\
        -o ${prefix}.vcf.gz \\
        --threads ${task.cpus} \\
        ${shard} \\
        ${model_dir} \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        mergedna: \$(mergedna --version)
    END_VERSIONS
    """

    stub:
    def prefix = task.ext.prefix ?: (meta.shard ? "${meta.id}.${meta.shard}-of-${meta.shards}" : "${meta.id}")
    """
    echo "" | gzip > ${prefix}.vcf.gz
    touch ${prefix}.vcf.gz.tbi

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        mergedna: \$(mergedna --version)
    END_VERSIONS
    """
}
