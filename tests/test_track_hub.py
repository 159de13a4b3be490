"""UCSC track hub text for `mergedna tracks --hub` (no model, no network, no UCSC binaries)."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mergedna_cli.errors import InputError, UsageError
from mergedna_cli.io import track_hub
from mergedna_cli.io.track_hub import (
    LONG_LABEL_MAX,
    SHORT_LABEL_MAX,
    check_hub_options,
    hub_text,
    hub_tracks,
    write_hub,
)

CHROM_SIZES = [("chr2", 1000), ("chr10", 500)]  # reference order; byte order puts chr10 first


def stanzas(text: str) -> list[list[str]]:
    return [block.splitlines() for block in text.strip().split("\n\n")]


def settings(stanza: list[str]) -> dict[str, str]:
    return dict(line.lstrip("#").split(" ", 1) for line in stanza if not line.startswith("# "))


def make_outputs(folder: Path, track_line: bool = False) -> str:
    prefix = folder / "out" / "brca1"
    prefix.parent.mkdir(parents=True)
    rows = ["chr2\t0\t3\tL3\t187\t.\t0\t3\t107,174,214", "chr2\t3\t4\tL1\t62\t.\t3\t4\t200,200,200",
            "chr10\t5\t7\tL2\t125\t.\t5\t7\t158,202,225"]
    head = ['track name="mergedna_tokens" itemRgb="On"'] if track_line else []
    Path(f"{prefix}.tokens.bed").write_text("\n".join(head + rows) + "\n")
    for name in ("boundary", "token_length", "entropy", "llr"):
        Path(f"{prefix}.{name}.bw").write_bytes(b"")  # only their names matter here
    return str(prefix)


def test_one_file_hub_layout_labels_and_relative_urls(tmp_path):
    prefix = make_outputs(tmp_path)
    hub_dir = tmp_path / "hub"
    tracks = hub_tracks(prefix, hub_dir, "mergedna-small", signals=True, tokens_disabled=None)
    text = hub_text("mergedna_brca1", "MergeDNA", "MergeDNA learned tokens (mergedna-small)", "me@example.org",
                    "hg38", tracks)
    hub, genome, *trackdb = stanzas(text)
    assert hub == ["hub mergedna_brca1", "shortLabel MergeDNA", "longLabel MergeDNA learned tokens (mergedna-small)",
                   "useOneFile on", "email me@example.org"]
    assert genome == ["genome hg38"]
    names = [settings(s)["track"] for s in trackdb]
    assert names == ["brca1_tokens", "brca1_boundary", "brca1_token_length", "brca1_entropy", "brca1_llr"]
    assert all(re.fullmatch(r"[A-Za-z]\w*", n) for n in names)
    for stanza in trackdb:
        fields = settings(stanza)
        assert stanza[0].startswith("track ")
        assert 0 < len(fields["shortLabel"]) <= SHORT_LABEL_MAX and 0 < len(fields["longLabel"]) <= LONG_LABEL_MAX
        assert fields["bigDataUrl"].startswith("../out/brca1.")  # relative to hub.txt
    by_name = {settings(s)["track"]: settings(s) for s in trackdb}
    assert by_name["brca1_tokens"]["type"] == "bigBed 9" and by_name["brca1_tokens"]["itemRgb"] == "on"
    assert by_name["brca1_tokens"]["bigDataUrl"] == "../out/brca1.tokens.bb"
    assert by_name["brca1_boundary"]["type"] == "bigWig 0 1"
    assert len(stanzas(hub_text("h", "s", "l", "a@b", "hg38", hub_tracks(prefix, hub_dir, "m", False, None)))) == 2 + 3


def test_without_bedtobigbed_the_tokens_stanza_is_commented_out(tmp_path, monkeypatch):
    monkeypatch.setattr(track_hub.shutil, "which", lambda name: None)
    prefix = make_outputs(tmp_path)
    notes = []
    path = write_hub(tmp_path / "hub", prefix, CHROM_SIZES, "mergedna-small", False, "me@example.org", log=notes.append)
    _, _, tokens, *others = stanzas(path.read_text())
    assert all(line.startswith("#") for line in tokens) and "bedToBigBed -type=bed9" in tokens[0]
    assert [settings(s)["track"] for s in others] == ["brca1_boundary", "brca1_token_length"]
    assert not any(line.startswith("#") for s in others for line in s)
    assert (tmp_path / "hub" / "chrom.sizes").read_text() == "chr2\t1000\nchr10\t500\n"
    assert len(notes) == 1 and "bedToBigBed not found" in notes[0]
    assert not Path(f"{prefix}.tokens.bb").exists()


def test_bedtobigbed_gets_byte_sorted_bed_without_track_line(tmp_path):
    prefix = make_outputs(tmp_path, track_line=True)
    fake = tmp_path / "bedToBigBed"  # records its arguments and input, writes the output
    fake.write_text('#!/bin/sh\necho "$@" > "$(dirname "$0")/args"\ncp "$2" "$(dirname "$0")/input"\n'
                    'cp "$2" "$4"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    path = write_hub(tmp_path / "hub", prefix, CHROM_SIZES, "mergedna-small", True, "me@example.org",
                     bed_to_bigbed=str(fake))
    assert (tmp_path / "args").read_text().split()[0] == "-type=bed9"
    lines = (tmp_path / "input").read_text().splitlines()
    assert [l.split("\t")[:2] for l in lines] == [["chr10", "5"], ["chr2", "0"], ["chr2", "3"]]
    assert Path(f"{prefix}.tokens.bb").exists()
    assert not [p for p in os.listdir(Path(prefix).parent) if p.startswith(".")]  # no temporaries left
    trackdb = stanzas(path.read_text())[2:]
    assert len(trackdb) == 5 and not any(line.startswith("#") for s in trackdb for line in s)


def test_labels_and_options_are_checked(tmp_path):
    prefix = make_outputs(tmp_path)
    long_model = "m" * 200
    for track in hub_tracks(prefix, tmp_path, long_model, True, None):
        assert len(track.long_label) <= LONG_LABEL_MAX and "..." in track.long_label
    with pytest.raises(UsageError, match="shortLabel"):
        hub_text("h", "x" * (SHORT_LABEL_MAX + 1), "l", "a@b", "hg38", [])
    with pytest.raises(UsageError, match="longLabel"):
        hub_text("h", "s", "x" * (LONG_LABEL_MAX + 1), "a@b", "hg38", [])
    Path(f"{prefix}.llr.bw").unlink()
    with pytest.raises(InputError, match="llr.bw not found"):
        write_hub(tmp_path / "hub", prefix, CHROM_SIZES, "m", True, "a@b")
    with pytest.raises(UsageError, match="--hub-email"):
        check_hub_options(None, "hg38")
    with pytest.raises(UsageError, match="assembly"):
        check_hub_options("a@b", "hg 38")


def test_track_hub_does_not_import_torch():
    code = "import sys, mergedna_cli.io.track_hub; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
