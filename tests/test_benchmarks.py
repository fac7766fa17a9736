"""The data-path benchmarks run as their README says, at a tiny size: a DataModule option they pass that the package
later refused (``val_fraction=0``) stopped both, and with them the GPU check that calls them, unnoticed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).parent / "benchmarks"
TINY = ["--height", "128", "--width", "64", "--batch", "2"]  # GMIC takes multiples of 64


def _run(script: str, *args: str, tmp_path: Path) -> dict:
    out = tmp_path / f"{script}.json"
    run = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *TINY, *args, "--json", str(out)],
        cwd=BENCHMARKS.parent.parent, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(out.read_text())


def test_loader_benchmark_prints_both_augmentation_paths_and_the_scaling_table(tmp_path: Path) -> None:
    args = ["--studies", "3", "--workers", "1,2", "--batches", "1", "--samples", "2", "--warp_iters", "1"]
    figures = _run("bench_loader.py", *args, "--transfer_workers", "1", tmp_path=tmp_path)
    text = json.dumps(figures)
    assert "worker_augment_img_per_s" in text and "device_augment_img_per_s" in text
    assert "main_over_worker" in text


def test_pipeline_benchmark_runs_the_datamodule_and_the_held_batch(tmp_path: Path) -> None:
    args = ["--studies", "3", "--workers", "1", "--prefetch", "1", "--warmup", "0", "--steps", "2", "--threads", "1",
            "--crop", "32,32", "--variants", "pipeline,model_only,model_only_rotating", "--rotate", "2"]  # fmt: skip
    figures = _run("bench_pipeline.py", *args, tmp_path=tmp_path)
    results = figures["results"]
    assert {"pipeline", "model_only", "model_only_rotating"} <= set(results)
    for variant in ("pipeline", "model_only", "model_only_rotating"):  # a failed one is {"failed": its stderr}
        assert results[variant]["images_per_s"] > 0, results[variant]
    assert results["pipeline_over_model_only"]["ratio"] > 0
    # one held batch is one tensor every step; rotating ones are new data at another address each step
    assert (results["model_only"]["image_addresses"], results["model_only_rotating"]["image_addresses"]) == (1, 2)


def test_the_ctrl_c_benchmark_stops_the_fixed_fit_and_can_still_turn_the_fix_off(tmp_path: Path) -> None:
    """Its side without the fixes turns them off by name in the fit's process: a renamed part must fail there, not
    leave that side a fix. A fit with the Ctrl-C fix that still ran 20 s after the Ctrl-C failed this once in a CI
    run under load (2026-12-06): a worker the Ctrl-C killed had left its loader's lock held (its stacks, kept since,
    showed the fit hung in ``_workers_done_event.set()``), which workers ignoring SIGINT ends. A fit kept running
    puts its log, with every thread's stack, in the failure's message."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from bench_ctrl_c import WITHOUT_FIX
    finally:
        sys.path.remove(str(BENCHMARKS))
    unfixed = subprocess.run([sys.executable, "-c", WITHOUT_FIX, "fit", "--help"], capture_output=True, text=True,
                             timeout=120)  # fmt: skip
    assert unfixed.returncode == 0 and "usage:" in unfixed.stdout, unfixed.stderr[-3000:]
    # a fit the Ctrl-C missed trains on until --wait ends (a minute of CPU at 60 s); a fixed one stops in seconds
    run = subprocess.run([sys.executable, str(BENCHMARKS / "bench_ctrl_c.py"), "--model", "toy", "--trials", "1",
                          "--delay", "0.5", "0.5", "--wait", "30", "--lost_logs", str(tmp_path / "kept")],
                         cwd=BENCHMARKS.parent.parent, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    kept = "".join(f"\n{log.name}:\n{log.read_text()[-6000:]}" for log in sorted((tmp_path / "kept").glob("*fix*")))
    assert "with the fix: 0 of 1 fits still ran 30 s after Ctrl-C; exit statuses [1]" in run.stdout, run.stdout + kept


def test_the_gpu_check_answers_help_without_running(tmp_path: Path) -> None:
    """``gpu_check.sh --help`` read no argument and started the whole check (minutes, 3.6 GB of data in /tmp)."""
    env = {"PATH": "/usr/bin:/bin", "OUT": str(tmp_path / "out"), "GPU_CHECK_WORK": str(tmp_path / "work")}
    for word, code in (("--help", 0), ("--hepl", 1)):
        run = subprocess.run(["bash", str(BENCHMARKS / "gpu_check.sh"), word], capture_output=True, text=True,
                             env=env, timeout=30)  # fmt: skip
        assert run.returncode == code and "One GPU check for issue 13" in run.stdout, run.stdout + run.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "work").exists()


# Runs each script given as `python <script> --help` runs it (as __main__, its folder first on sys.path), all in one
# process: each script's own imports are checked, and torch and Lightning are imported once, not once a script.
_ANSWER_HELP = """
import contextlib, io, json, runpy, sys, traceback
scripts = sys.argv[1:]
sys.path.insert(0, scripts[0].rpartition("/")[0])
answers = {}
for script in scripts:
    sys.argv, printed = [script, "--help"], io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            runpy.run_path(script, run_name="__main__")
        answers[script] = ["ended without exiting", printed.getvalue()]
    except SystemExit as stop:
        answers[script] = [stop.code or 0, printed.getvalue()]
    except BaseException:
        answers[script] = ["raised", traceback.format_exc()]
print(json.dumps(answers))
"""


def test_every_benchmark_answers_help() -> None:
    """An import error or a renamed option in a script nobody runs in CI shows here, not on a lent GPU machine."""
    scripts = sorted(str(p) for p in BENCHMARKS.glob("bench_*.py"))
    run = subprocess.run([sys.executable, "-c", _ANSWER_HELP, *scripts], cwd=BENCHMARKS.parent.parent,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    answers = json.loads(run.stdout.splitlines()[-1])
    assert sorted(answers) == scripts
    wrong = {Path(s).name: a for s, a in answers.items() if a[0] != 0 or not a[1].startswith("usage:")}
    assert not wrong, wrong


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is here")
@pytest.mark.parametrize("script", ["bench_gmic.py", "bench_data.py", "bench_train.py"])
def test_a_cuda_device_without_cuda_is_one_line_before_any_work(script: str) -> None:
    """The README's GPU commands, run on a machine without one, crashed with a driver traceback (bench_data after a
    minute of CPU rows; bench_train behind a CalledProcessError)."""
    run = subprocess.run([sys.executable, str(BENCHMARKS / script), "--device", "cuda"], cwd=BENCHMARKS.parent.parent,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr[-3000:]
    expected = f"{script}: --device cuda needs a CUDA GPU; torch {torch.__version__} finds none here (give --device cpu"
    assert run.stderr.strip() == expected + ", or run it on a GPU machine)"


@pytest.mark.parametrize("driver_has_reasons", [True, False])
def test_the_gpu_sampler_reads_clocks_power_and_reasons_and_survives_a_field_the_driver_lacks(
    tmp_path: Path, driver_has_reasons: bool
) -> None:
    """The 2026-12-04 H200 run found the same compiled graphs 4 ms slower a step in one variant than in the other:
    the sampler now records whether the chip held its clocks down meanwhile. Here nvidia-smi is a stand-in that
    answers as a driver does, or refuses the clock-event field as a driver older than 535 does."""
    fake = tmp_path / "nvidia-smi"
    refuse = "print('Field \"clocks_event_reasons.active\" is not a valid field to query.'); sys.exit(2)"
    reasons = "['0x0000000000000004', '0x0000000000000000']" if driver_has_reasons else "None"
    fake.write_text(
        "#!/usr/bin/env python3\n"
        "import sys, time\n"
        "query = next(a for a in sys.argv if a.startswith('--query-gpu=')).split('=', 1)[1]\n"
        "rows = {'utilization.gpu,memory.used': ['90, 4000', '96, 4100'],\n"
        "        'clocks.sm,clocks.max.sm,power.draw,power.limit,temperature.gpu': ['1980, 1980, 690.5, 700.00, 61',\n"
        "                                                                           '1500, 1980, 699.0, 700.00, 64'],\n"
        f"        'clocks_event_reasons.active': {reasons}}}\n"
        f"if rows[query] is None:\n    {refuse}\n"
        "for row in rows[query]:\n"
        "    print(row, flush=True)\n"
        "time.sleep(60)\n"
    )
    fake.chmod(0o755)
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from bench_pipeline import _GpuSampler
    finally:
        sys.path.remove(str(BENCHMARKS))
    sampler = _GpuSampler(command=str(fake))
    sampler.start()
    queries = (sampler.load, sampler.clocks, sampler.reasons) if driver_has_reasons else (sampler.load, sampler.clocks)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(len(q.samples) < 2 for q in queries):
        time.sleep(0.05)  # the rows arrive as soon as the stand-in starts
    figures = sampler.stop()
    assert figures["gpu_util_mean"] == 93 and figures["gpu_util_min"] == 90 and figures["gpu_mem_used_mib_max"] == 4100
    clocks = (figures["sm_clock_mhz_mean"], figures["sm_clock_mhz_min"], figures["sm_clock_mhz_max_possible"])
    assert clocks == (1740, 1500, 1980)
    assert figures["power_w_mean"] == pytest.approx(694.75) and figures["temperature_c_max"] == 64
    if driver_has_reasons:
        assert (figures["power_capped_share"], figures["heat_slowdown_share"]) == (0.5, 0.0)
    else:
        assert "power_capped_share" not in figures  # the refused field: left out, the others unaffected


def test_the_study_benchmark_repeats_the_test_images_without_changing_the_figures(tmp_path: Path) -> None:
    """``bench_study.py`` times a study's tables at VinDr's size by repeating each run's test images: its repeated
    records must be the same test set, only larger (a box pointing at the wrong copy's image or mass would change
    them), so every mean over seeds is the original's and the intervals over the seeds and the test set, drawn from
    the records, move (with two seeds they widen: Hillis's degrees of freedom fall towards the seeds' one as the test
    set's share of the variance shrinks)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from bench_study import copied_runs
    finally:
        sys.path.remove(str(BENCHMARKS))
    from test_afroc import FAIR, GOOD, POOR, _study_runs

    from wsod_mammo.detection.study_report import write_study_outputs

    study = tmp_path / "study"
    runs = _study_runs(
        study / "runs", {1: {"cam": {"cam": FAIR, "gradcam": GOOD}}, 2: {"cam": {"cam": POOR, "gradcam": FAIR}}}
    )
    for report in runs.values():
        (report.parent / "test.done").write_text("detection.json\n")
    tables = {}
    for copies in (1, 3):
        write_study_outputs(tmp_path / f"out{copies}", copied_runs(study, tmp_path / f"runs{copies}", copies, 2))
        tables[copies] = {name: (tmp_path / f"out{copies}" / name).read_text() for name in ("summary.md", "wafroc.md")}

    def cells(text: str) -> list[tuple[float, float, float]]:
        found = re.findall(r"(\d\.\d+) \[(\d\.\d+), (\d\.\d+)\]", text)
        return [tuple(map(float, cell)) for cell in found]

    for name in ("summary.md", "wafroc.md"):  # the summary holds Table II
        assert "over the seeds and the test set" in tables[3][name]
        once, thrice = cells(tables[1][name]), cells(tables[3][name])
        assert len(once) == len(thrice) >= 4, (once, thrice)
        assert [mean for mean, *_ in thrice] == [mean for mean, *_ in once] and thrice != once, (name, once, thrice)
    assert (tmp_path / "runs3" / "gradcam_seed2" / "detection.json").exists()  # filled up to two train methods
