"""A UCSC track hub for `mergedna tracks` outputs: one hub.txt (`useOneFile on`: hub stanza, genome
stanza, then the trackDb stanzas) whose bigDataUrls point at the bigWigs and the tokens as bigBed.

UCSC reads only indexed binary files from a hub, so the BED9 must become bigBed. No Python library
writes bigBed; with UCSC's `bedToBigBed` on PATH the tokens are converted here (PREFIX.tokens.bb),
otherwise the tokens stanza is written commented out together with the command that makes the file.
Paths are relative to the hub folder: serve the folder that holds both over http(s).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError, UsageError
from .tracks_writer import track_files

SHORT_LABEL_MAX = 17  # UCSC truncates longer labels in the track list
LONG_LABEL_MAX = 80


@dataclass(frozen=True)
class HubTrack:
    name: str          # unique id: a letter, then letters, digits, underscores
    url: str           # bigDataUrl, relative to hub.txt
    type: str
    short_label: str
    long_label: str
    settings: dict[str, str] = field(default_factory=dict)
    disabled: str | None = None  # why the stanza is commented out


def check_labels(short_label: str, long_label: str) -> None:
    if not 0 < len(short_label) <= SHORT_LABEL_MAX:
        raise UsageError(f"hub shortLabel '{short_label}' must be 1-{SHORT_LABEL_MAX} characters")
    if not 0 < len(long_label) <= LONG_LABEL_MAX:
        raise UsageError(f"hub longLabel '{long_label}' must be 1-{LONG_LABEL_MAX} characters")


def check_hub_options(email: str | None, genome: str) -> None:
    """Before a long run: what hub.txt needs must be valid."""
    if not email or "@" not in email or any(c.isspace() for c in email):
        raise UsageError("--hub needs --hub-email ADDRESS: UCSC hubs name a contact")
    if not re.fullmatch(r"[A-Za-z0-9_.]+", genome):
        raise UsageError(f"--hub-genome '{genome}' is not a UCSC assembly name (e.g. hg38)")


def hub_text(name: str, short_label: str, long_label: str, email: str, genome: str,
             tracks: list[HubTrack], note: str | None = None) -> str:
    """note: a comment line closing the hub stanza (what made the tracks; UCSC ignores '#' lines)."""
    check_labels(short_label, long_label)
    lines = [f"hub {name}", f"shortLabel {short_label}", f"longLabel {long_label}", "useOneFile on",
             f"email {email}", *([f"# {note}"] if note else []), "", f"genome {genome}", ""]
    for track in tracks:
        check_labels(track.short_label, track.long_label)
        stanza = [f"track {track.name}", f"bigDataUrl {track.url}", f"shortLabel {track.short_label}",
                  f"longLabel {track.long_label}", f"type {track.type}",
                  *(f"{key} {value}" for key, value in track.settings.items())]
        if track.disabled:  # a '#' line inside a stanza is a comment to UCSC
            stanza = [f"# {track.disabled}"] + [f"#{line}" for line in stanza]
        lines += stanza + [""]
    return "\n".join(lines)


def hub_tracks(prefix: str, hub_dir: Path, model_name: str, signals: bool, tokens_disabled: str | None
               ) -> list[HubTrack]:
    """The tracks of one `mergedna tracks` run, ids prefixed by its output name."""
    base = re.sub(r"\W", "_", Path(prefix).name) or "mergedna"
    base = base if base[0].isalpha() else f"m_{base}"

    def url(suffix: str) -> str:
        return Path(os.path.relpath(f"{prefix}.{suffix}", hub_dir)).as_posix()

    def long(text: str) -> str:  # the model name is cut, never the description
        room = LONG_LABEL_MAX - len(text.format(""))
        return text.format(model_name if len(model_name) <= room else model_name[:max(room - 3, 0)] + "...")

    tracks = [
        HubTrack(f"{base}_tokens", url("tokens.bb"), "bigBed 9", "MergeDNA tokens",
                 long("MergeDNA learned tokens ({}), darker = longer"),
                 {"itemRgb": "on", "visibility": "pack"}, tokens_disabled),
        HubTrack(f"{base}_boundary", url("boundary.bw"), "bigWig 0 1", "MergeDNA starts",
                 long("MergeDNA token starts ({}): 1 at the first base of a token"),
                 {"visibility": "full", "viewLimits": "0:1", "autoScale": "off", "maxHeightPixels": "40:20:8"}),
        HubTrack(f"{base}_token_length", url("token_length.bw"), "bigWig", "MergeDNA tok len",
                 long("MergeDNA token length ({}): length of the token covering each base"),
                 {"visibility": "full", "autoScale": "on", "maxHeightPixels": "60:30:8"}),
    ]
    if signals:
        tracks += [
            HubTrack(f"{base}_entropy", url("entropy.bw"), "bigWig 0 1.3863", "MergeDNA entropy",
                     long("MergeDNA masked-base entropy ({}), nats"),
                     {"visibility": "full", "viewLimits": "0:1.3863", "autoScale": "off"}),
            HubTrack(f"{base}_llr", url("llr.bw"), "bigWig", "MergeDNA LLR",
                     long("MergeDNA mean masked-base LLR, alt vs ref ({})"),
                     {"visibility": "full", "autoScale": "on", "altColor": "200,60,60"}),
        ]
    return tracks


def tokens_to_bigbed(prefix: str, chrom_sizes: Path, bed_to_bigbed: str) -> Path:
    """PREFIX.tokens.bed -> PREFIX.tokens.bb. UCSC's tools want chromosomes in byte order (LC_ALL=C)
    and no track line; the BED is in reference order and may start with one."""
    bed, out = Path(f"{prefix}.tokens.bed"), Path(f"{prefix}.tokens.bb")
    sorted_bed = out.with_name(f".{out.name}.sorted.tmp{os.getpid()}")
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    with open(bed) as handle:
        skip = handle.readline().startswith(("track", "browser"))  # only ever the first line
    try:
        with open(sorted_bed, "w") as handle:
            source = subprocess.Popen(["tail", "-n", "+2" if skip else "+1", str(bed)], stdout=subprocess.PIPE)
            subprocess.run(["sort", "-k1,1", "-k2,2n"], stdin=source.stdout, stdout=handle, check=True,
                           env={**os.environ, "LC_ALL": "C"})
            source.stdout.close()
            source.wait()
        run = subprocess.run([bed_to_bigbed, "-type=bed9", str(sorted_bed), str(chrom_sizes), str(tmp)],
                             capture_output=True, text=True, check=False)
        if run.returncode != 0:
            raise InputError(f"bedToBigBed failed on {bed}: {run.stderr.strip()[-500:]}")
        os.replace(tmp, out)
    finally:
        sorted_bed.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return out


def write_hub(hub_dir: str | os.PathLike, prefix: str, chrom_sizes: list[tuple[str, int]], model_name: str,
              signals: bool, email: str, genome: str = "hg38",
              bed_to_bigbed: str | None = None, log: Callable[[str], None] = lambda m: None,
              made_with: str | None = None) -> Path:
    """hub.txt and chrom.sizes in `hub_dir` for the tracks at `prefix`; converts the tokens to
    bigBed when `bed_to_bigbed` (default: bedToBigBed on PATH) exists. made_with: what ran the
    model (e.g. "mergedna 0.9, backend onnx on cpu"), written as a comment. Returns hub.txt's path."""
    check_hub_options(email, genome)
    missing = [f"{prefix}.{s}" for s in track_files(signals) if not Path(f"{prefix}.{s}").is_file()]
    if missing:
        raise InputError(f"cannot write a hub: {', '.join(missing)} not found")
    hub_dir = Path(hub_dir)
    hub_dir.mkdir(parents=True, exist_ok=True)
    sizes = hub_dir / "chrom.sizes"
    sizes.write_text("".join(f"{name}\t{length}\n" for name, length in chrom_sizes))
    tool = bed_to_bigbed or shutil.which("bedToBigBed")
    disabled = None
    if tool:
        tokens_to_bigbed(prefix, sizes, tool)
    else:
        command = (f"LC_ALL=C sort -k1,1 -k2,2n {prefix}.tokens.bed | grep -v '^track' > tokens.sorted.bed && "
                   f"bedToBigBed -type=bed9 tokens.sorted.bed {sizes} {prefix}.tokens.bb")
        disabled = f"bedToBigBed was not found: make the bigBed, then uncomment this stanza: {command}"
        log(f"hub: bedToBigBed not found, so the tokens track is commented out in {hub_dir / 'hub.txt'}; "
            f"make {prefix}.tokens.bb with: {command}")
    name = re.sub(r"\W", "_", f"mergedna_{Path(prefix).name}")
    text = hub_text(name, "MergeDNA", f"MergeDNA learned tokens and model signals ({model_name})"[:LONG_LABEL_MAX],
                    email, genome, hub_tracks(prefix, hub_dir, model_name, signals, disabled),
                    note=f"made by {made_with}" if made_with else None)
    path = hub_dir / "hub.txt"
    tmp = path.with_name(f".hub.txt.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
