process CONCAT_SHARDS {
    tag "${meta.id}"
    label 'process_single'

    // bcftools (with tabix) must be on PATH or in the container.

    input:
    tuple val(meta), path(shards, stageAs: 'shards/*')   // in shard order

    output:
    tuple val(meta), path("${prefix}.vcf.gz"), path("${prefix}.vcf.gz.tbi"), emit: vcf
    path "versions.yml", emit: versions

    script:
    prefix = task.ext.prefix ?: "${meta.id}.scored"
    // --naive: BGZF blocks copied as they are, header from the first shard: exactly the records
    // of one unsharded run
    """
    bcftools concat --naive -Oz -o ${prefix}.vcf.gz ${shards}
    tabix -p vcf ${prefix}.vcf.gz

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        bcftools: \$(bcftools --version | sed -n '1s/bcftools //p')
    END_VERSIONS
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}.scored"
    """
    echo "" | gzip > ${prefix}.vcf.gz
    touch ${prefix}.vcf.gz.tbi versions.yml
    """
}
