"""Join the shard outputs of `mergedna score --shard I/N` into one bgzipped, tabix-indexed VCF.

usage: python concat_vcfs.py -o OUT.vcf.gz SHARD_1.vcf.gz ... SHARD_N.vcf.gz   (shards in order)

The header is written once (shard 1's); records follow shard by shard, byte for byte, so the
result has exactly the records of one unsharded run. Shards whose headers differ in anything but
the recorded command line come from different runs and are refused. Same as
`bcftools concat --naive` (which needs bcftools), with mergedna's own writer: temporary name,
index built before the rename.
"""

from __future__ import annotations

import argparse
import gzip
import sys

from mergedna_cli.io.vcf import VcfWriter

COMMAND = "##mergedna_command="


def header_and_records(path: str):
    handle = gzip.open(path, "rt") if path.endswith((".gz", ".bgz")) else open(path)
    header = []
    for line in handle:
        if not line.startswith("#"):
            return header, _records(line, handle)
        header.append(line)
    handle.close()
    return header, iter(())


def _records(first: str, handle):
    with handle:
        yield first
        yield from handle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", required=True, help="merged VCF (.vcf.gz: bgzip + tabix)")
    parser.add_argument("shards", nargs="+", help="shard VCFs, in shard order")
    args = parser.parse_args(argv)
    writer = VcfWriter(args.out, log=lambda message: print(message, file=sys.stderr))
    try:
        first = None
        sorted_input, last = True, (None, -1)
        for path in args.shards:
            header, records = header_and_records(path)
            kept = [line for line in header if not line.startswith(COMMAND)]
            if first is None:
                first = kept
                writer.write("".join(header))
            elif kept != first:
                raise SystemExit(f"concat_vcfs: error: {path}: header differs from {args.shards[0]}'s "
                                 "(shards of different runs?)")
            for line in records:
                chrom, pos = line.split("\t", 2)[:2]
                if chrom == last[0] and int(pos) < last[1]:
                    sorted_input = False
                last = (chrom, int(pos))
                writer.write(line)
    except BaseException:
        writer.abort()
        raise
    writer.close(sorted_input=sorted_input)
    return 0


if __name__ == "__main__":
    sys.exit(main())
