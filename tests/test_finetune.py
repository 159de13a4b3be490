"""finetune / predict / evaluate: a planted motif is learned end to end, predictions are
deterministic and consistent across backends, and bad labelled inputs fail on one line."""

from __future__ import annotations

import csv
import functools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mergedna_cli.errors import InputError
from mergedna_cli.finetune.metrics import classification_metrics, regression_metrics
from mergedna_cli.finetune.task import TaskSpec, encode_targets, make_task
from mergedna_cli.io.labelled import read_sequences

MOTIF = "TATAAAAGGCGCGCC"


def _planted(n: int, length: int, seed: int) -> list[tuple[str, str]]:
    """Half the sequences carry MOTIF at a random place (label 'motif'), half do not ('background')."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        seq = "".join(rng.choice(list("ACGT"), size=length))
        label = "background"
        if i % 2 == 0:
            at = int(rng.integers(0, length - len(MOTIF)))
            seq = seq[:at] + MOTIF + seq[at + len(MOTIF):]
            label = "motif"
        rows.append((seq, label))
    return rows


def _write_tsv(path: Path, rows, header=("id", "sequence", "label")) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(header)
        for i, row in enumerate(rows):
            writer.writerow((f"seq{i}", *row))
    return path


@pytest.fixture(scope="session")
def cli(run_cli):
    """run_cli, failing with the command's stderr on a non-zero exit unless check=False."""
    return functools.partial(run_cli, check=True)


@pytest.fixture(scope="module")
def motif_data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("motif")
    return {"train": _write_tsv(root / "train.tsv", _planted(320, 64, seed=1)),
            "val": _write_tsv(root / "val.tsv", _planted(80, 64, seed=2)),
            "test": _write_tsv(root / "test.tsv", _planted(120, 64, seed=3)), "root": root}


@pytest.fixture(scope="module")
def motif_model(cli, motif_data, tiny_model_dir) -> Path:
    out = motif_data["root"] / "model"
    cli("finetune", "--train", motif_data["train"], "--val", motif_data["val"], "-o", out,
         "--model", tiny_model_dir, "--epochs", 8, "--lr", 3e-3, "--batch-size", 16,
         "--patience", 8, "--seed", 0, "--threads", 1, "--quiet")
    return out


def test_finetune_learns_a_planted_motif(cli, motif_model, motif_data):
    info = json.loads((motif_model / "finetune.json").read_text())
    assert info["task"]["label_names"] == ["background", "motif"]
    assert len(info["base_model"]["sha256"]) == 64
    assert info["validation"]["accuracy"] >= 0.85, info["validation"]
    history = [json.loads(line) for line in (motif_model / "metrics.jsonl").read_text().splitlines()]
    assert history and all("bases_per_s" in row and "val_mcc" in row for row in history)
    # held-out test set, never seen in training or model selection
    out = motif_data["root"] / "eval.json"
    cli("evaluate", "--model", motif_model, "--input", motif_data["test"], "--json", out, "--quiet")
    metrics = json.loads(out.read_text())["metrics"]
    assert metrics["n"] == 120
    assert metrics["accuracy"] >= 0.8 and metrics["auroc"] >= 0.85, metrics


def test_predict_is_deterministic_and_keeps_input_columns(cli, motif_model, motif_data):
    a, b = motif_data["root"] / "a.tsv", motif_data["root"] / "b.tsv"
    for out in (a, b):
        cli("predict", "--model", motif_model, "--input", motif_data["test"], "-o", out, "--quiet")
    assert a.read_bytes() == b.read_bytes()
    rows = list(csv.DictReader(open(a), delimiter="\t"))
    assert len(rows) == 120 and rows[0]["id"] == "seq0"
    assert set(rows[0]) == {"id", "sequence", "label", "predicted", "prob_background", "prob_motif"}
    for row in rows:
        p = float(row["prob_background"]), float(row["prob_motif"])
        assert abs(sum(p) - 1) < 1e-4
        assert row["predicted"] == ("motif" if p[1] > p[0] else "background")


def test_predict_onnx_backend_matches_torch(cli, motif_model, motif_data):
    torch_out, onnx_out = motif_data["root"] / "t.tsv", motif_data["root"] / "o.tsv"
    cli("predict", "--model", motif_model, "--input", motif_data["test"], "-o", torch_out, "--quiet")
    cli("predict", "--model", motif_model, "--input", motif_data["test"], "-o", onnx_out,
         "--backend", "onnx", "--quiet")
    t = list(csv.DictReader(open(torch_out), delimiter="\t"))
    o = list(csv.DictReader(open(onnx_out), delimiter="\t"))
    diff = max(abs(float(x["prob_motif"]) - float(y["prob_motif"])) for x, y in zip(t, o))
    assert diff < 1e-3
    assert sum(x["predicted"] != y["predicted"] for x, y in zip(t, o)) <= 1


def test_predict_from_fasta_and_bed(cli, motif_model, motif_data, tmp_path):
    seqs = [s for s, _ in _planted(6, 64, seed=9)]
    fasta = tmp_path / "in.fa"
    fasta.write_text("".join(f">r{i}\n{s}\n" for i, s in enumerate(seqs)))
    out = tmp_path / "fa.tsv"
    cli("predict", "--model", motif_model, "--input", fasta, "-o", out, "--quiet")
    rows = list(csv.DictReader(open(out), delimiter="\t"))
    assert [r["id"] for r in rows] == [f"r{i}" for i in range(6)]
    ref = tmp_path / "ref.fa"
    ref.write_text(">chrT\n" + "".join(seqs) + "\n")
    bed = tmp_path / "in.bed"
    bed.write_text("".join(f"chrT\t{i * 64}\t{(i + 1) * 64}\tr{i}\n" for i in range(6)))
    out_bed = tmp_path / "bed.tsv"
    cli("predict", "--model", motif_model, "--input", bed, "--fasta", ref, "-o", out_bed, "--quiet")
    from_bed = list(csv.DictReader(open(out_bed), delimiter="\t"))
    assert [r["prob_motif"] for r in from_bed] == [r["prob_motif"] for r in rows]


def test_regression_task(cli, tmp_path, tiny_model_dir):
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(200):
        seq = "".join(rng.choice(list("ACGT"), size=48))
        rows.append((seq, f"{seq.count('G') + seq.count('C'):.1f}"))  # GC count: learnable
    train = _write_tsv(tmp_path / "train.tsv", rows[:160])
    val = _write_tsv(tmp_path / "val.tsv", rows[160:])
    out = tmp_path / "reg"
    cli("finetune", "--train", train, "--val", val, "-o", out, "--model", tiny_model_dir, "--task", "regression",
         "--epochs", 3, "--lr", 3e-3, "--batch-size", 16, "--threads", 1, "--quiet")
    info = json.loads((out / "finetune.json").read_text())
    assert info["task"]["kind"] == "regression" and info["validation"]["pearson"] is not None
    pred = tmp_path / "pred.tsv"
    cli("predict", "--model", out, "--input", val, "-o", pred, "--quiet")
    values = [float(r["predicted"]) for r in csv.DictReader(open(pred), delimiter="\t")]
    assert len(values) == 40 and 10 < np.mean(values) < 38  # back on the label scale, not standardised


@pytest.mark.parametrize("case,content,message", [
    ("missing column", "id\tseq\tlabel\nx\tACGT\t1\n", "no 'sequence' column"),
    ("empty sequence", "sequence\tlabel\nACGT\t1\n\t0\n", "line 3: empty sequence"),
    ("non-ACGT", "sequence\tlabel\nACGT\t1\nACXT\t0\n", "character 'X'"),
    ("missing label", "sequence\tlabel\nACGT\t1\nACGT\t\n", "line 3: empty label"),
])
def test_bad_training_input_is_one_line_error(cli, case, content, message, tmp_path, tiny_model_dir):
    bad = tmp_path / "bad.tsv"
    bad.write_text(content)
    proc = cli("finetune", "--train", bad, "--val", bad, "-o", tmp_path / "m", "--model", tiny_model_dir,
                check=False)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr, proc.stderr


def test_typo_class_in_evaluation_file(cli, motif_model, tmp_path):
    bad = _write_tsv(tmp_path / "typo.tsv", [("ACGTACGTAC" * 5, "motif"), ("ACGTACGTAC" * 5, "motiff")])
    proc = cli("evaluate", "--model", motif_model, "--input", bad, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0
    assert "line 3: label 'motiff' is not one of the model's classes (background, motif)" in proc.stderr


def test_predict_needs_a_finetuned_model(cli, tiny_model_dir, tmp_path):
    seqs = tmp_path / "s.tsv"
    seqs.write_text("sequence\nACGTACGT\n")
    proc = cli("predict", "--model", tiny_model_dir, "--input", seqs, "-o", tmp_path / "p.tsv", check=False)
    assert proc.returncode == 1 and "not a fine-tuned model" in proc.stderr


def test_labels_ordered_naturally_and_typos_rejected():
    task = make_task("classification", ["10", "2", "1", "2"], "x")
    assert task.label_names == ("1", "2", "10")
    with pytest.raises(InputError, match="'3' is not one of"):
        encode_targets(task, ["1", "3"], "f.tsv")
    with pytest.raises(InputError, match="only"):
        make_task("classification", ["a", "a"], "f.tsv")


def test_metrics_against_hand_computed_values():
    truth = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.2, 0.8]])
    m = classification_metrics(truth, probs)
    assert m["accuracy"] == 0.75 and m["auroc"] == 1.0
    assert abs(m["mcc"] - 1 / np.sqrt(3)) < 1e-9  # tp 2 tn 1 fp 1 fn 0
    assert abs(m["f1"] - 0.8) < 1e-9
    task = TaskSpec("regression", (), 5.0, 2.0)
    r = regression_metrics(task, np.array([-1.0, 0.0, 1.0]), np.array([-1.0, 0.0, 1.0]))
    assert r["pearson"] == pytest.approx(1.0) and r["mse"] == pytest.approx(0.0)


def test_bed_with_label_column(tmp_path):
    ref = tmp_path / "ref.fa"
    ref.write_text(">c1\n" + "ACGT" * 50 + "\n")
    bed = tmp_path / "x.bed"
    bed.write_text("c1\t0\t8\tpos\t0\t+\nc1\t8\t16\tneg\t0\t-\n")
    data = read_sequences(str(bed), ref, require_label=True)
    assert data.labels == ["pos", "neg"]
    assert data.sequences == ["ACGTACGT", "ACGTACGT"]  # reverse complement of ACGTACGT is itself
    bed.write_text("c1\t190\t260\tpos\n")
    with pytest.raises(InputError, match="runs past the end"):
        read_sequences(str(bed), ref, require_label=True)


def test_two_process_gloo_finetune(run_cli, motif_data, tiny_model_dir, tmp_path):
    out = tmp_path / "ddp"
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29547",
         "-m", "mergedna_cli", "finetune", "--train", str(motif_data["train"]), "--val", str(motif_data["val"]),
         "-o", str(out), "--model", str(tiny_model_dir), "--epochs", "2", "--batch-size", "16", "--quiet"],
        capture_output=True, text=True, timeout=300, env=run_cli.env())
    assert run.returncode == 0, run.stderr[-2000:]
    info = json.loads((out / "finetune.json").read_text())
    assert info["training"]["world_size"] == 2 and info["training"]["epochs_run"] == 2
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in history] == [10, 20]  # 320 sequences / (2 ranks x 16) per epoch


def test_rc_augmented_model_is_strand_symmetric(cli, motif_data, tiny_model_dir, tmp_path):
    out = tmp_path / "rc"
    cli("finetune", "--train", motif_data["train"], "--val", motif_data["val"], "-o", out,
         "--model", tiny_model_dir, "--epochs", 1, "--batch-size", 32, "--rc-augment", "--threads", 1, "--quiet")
    assert json.loads((out / "finetune.json").read_text())["strand"] == "both"
    comp = str.maketrans("ACGT", "TGCA")
    seqs = [s for s, _ in _planted(4, 64, seed=5)]
    fasta = tmp_path / "both.fa"
    fasta.write_text("".join(f">f{i}\n{s}\n>r{i}\n{s.translate(comp)[::-1]}\n" for i, s in enumerate(seqs)))
    pred = tmp_path / "p.tsv"
    cli("predict", "--model", out, "--input", fasta, "-o", pred, "--quiet")
    probs = [float(r["prob_motif"]) for r in csv.DictReader(open(pred), delimiter="\t")]
    assert np.allclose(probs[0::2], probs[1::2], atol=1e-5)


def test_predict_and_evaluate_take_other_column_names(cli, motif_model, motif_data, tmp_path):
    rows = list(csv.reader(open(motif_data["test"]), delimiter="\t"))
    renamed = tmp_path / "renamed.tsv"
    with open(renamed, "w", newline="") as handle:
        csv.writer(handle, delimiter="\t", lineterminator="\n").writerows([["id", "dna", "truth"], *rows[1:]])
    plain, other = tmp_path / "plain.tsv", tmp_path / "other.tsv"
    cli("predict", "--model", motif_model, "--input", motif_data["test"], "-o", plain, "--quiet")
    cli("predict", "--model", motif_model, "--input", renamed, "-o", other, "--sequence-column", "dna", "--quiet")
    column = lambda path: [r["predicted"] for r in csv.DictReader(open(path), delimiter="\t")]  # noqa: E731
    assert column(other) == column(plain)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    cli("evaluate", "--model", motif_model, "--input", motif_data["test"], "--json", a, "--quiet")
    cli("evaluate", "--model", motif_model, "--input", renamed, "--json", b, "--sequence-column", "dna",
         "--label-column", "truth", "--quiet")
    assert json.loads(a.read_text())["metrics"] == json.loads(b.read_text())["metrics"]
    refused = cli("predict", "--model", motif_model, "--input", renamed, "-o", renamed, check=False)
    assert refused.returncode == 2 and "is the file given to --input" in refused.stderr


def test_finetune_warns_when_validation_is_the_training_set(cli, motif_data, tiny_model_dir, tmp_path):
    proc = cli("finetune", "--train", motif_data["train"], "--val", motif_data["train"], "-o", tmp_path / "m",
                "--model", tiny_model_dir, "--epochs", 1, "--freeze-encoder", "--threads", 1, "--quiet")
    assert "mergedna: warning: --val" in proc.stderr and "same file as --train" in proc.stderr
    copy = tmp_path / "val_copy.tsv"
    copy.write_bytes(Path(motif_data["val"]).read_bytes() + b"seqx\t" + open(motif_data["train"], "rb").read()
                     .splitlines()[1].split(b"\t", 1)[1] + b"\n")
    proc = cli("finetune", "--train", motif_data["train"], "--val", copy, "-o", tmp_path / "m2",
                "--model", tiny_model_dir, "--epochs", 1, "--freeze-encoder", "--threads", 1, "--quiet")
    assert "1 of 81 sequences of --val" in proc.stderr


def test_finetune_help_lists_the_choices(cli):
    proc = cli("finetune", "--help")
    assert "classification" in proc.stdout and "regression" in proc.stdout and "sampling" in proc.stdout
