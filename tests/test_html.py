"""`robustfront report SWEEP_DIR --html`: one self-contained index.html (figures as data URIs, no network),
checked as text here and, where Debian's chromium is installed, in a real headless browser: a desktop-width
screenshot, no console errors, every embedded image decoded."""
import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from robustfront.cli import main

SANITY = {"norm": "Linf", "eps": 32 / 255, "n": 50, "seed": 0,
          "checks": [{"name": "1. monotone_in_eps", "passed": True, "detail": "PGD-20 falls with eps"},
                     {"name": "3. gradient_free_not_stronger", "passed": False, "detail": "Square 20% vs PGD-20 30%"}]}


def fake_sweep(root: Path) -> Path:
    """A finished sweep as `robustfront sweep` leaves it: 2 families x 2 knobs x 2 seeds, one point with the
    gradient-masking checks, every point with its metrics.jsonl (CA-AT's with cos and mu)."""
    names = []
    for fam, knob in (("ca_at", "gamma"), ("vanilla", "lam")):
        for i, v in enumerate((0.5, 0.8)):
            for seed in (0, 1):
                name = f"method={fam},{knob}={v},seed={seed}"
                d = root / "points" / name
                d.mkdir(parents=True)
                cfg = {"method": fam, "data": "digits", "model": "small_cnn", "model_args": {"width": 16}, "epochs": 3,
                       "schedule": "cosine", "eps": "32/255", "norm": "Linf", "seed": seed, "opts": {knob: v},
                       "select_on": "val"}
                (d / "config.yaml").write_text(yaml.safe_dump(cfg))
                clean, aa = 0.97 - 0.02 * i + 0.003 * seed, 0.70 + 0.05 * i + (0.02 if fam == "ca_at" else 0) - 0.004 * seed
                ev = {"clean_acc": clean, "robust_acc": {"pgd20": aa + 0.03, "autoattack": aa}, "worst_case_acc": aa,
                      "n": 50, "eps": 32 / 255, "norm": "Linf", "seed": 0, "data": "digits", "split": "test",
                      "eps_str": "32/255", "model": "small_cnn", "method": fam,
                      "checkpoint": f"points/{name}/checkpoints/best.pt", "config_hash": "c", "eval_hash": "e",
                      **({"sanity": SANITY} if (fam, i, seed) == ("ca_at", 0, 0) else {})}
                (d / "eval.json").write_text(json.dumps(ev))
                (d / "point.json").write_text(json.dumps({"varied": {"method": fam, f"opts.{knob}": v, "seed": seed},
                                                          "config": cfg, "config_hash": "c", "eval_hash": "e"}))
                lines = [{"epoch": e, "train_loss": 2 / e, "train_clean_acc": 1 - 0.4 / e, "train_adv_acc": 0.6 - 0.2 / e,
                          "val_clean_acc": 0.95 - 0.3 / e, "val_pgd_acc": 0.6 - 0.2 / e,
                          **({"cos": 0.2 / e, "mu": 0.1 * e} if fam == "ca_at" else {})} for e in (1, 2, 3)]
                (d / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))
                names.append(name)
    (root / "sweep.json").write_text(json.dumps({"points": [{"name": n} for n in names]}))
    return root


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    root = tmp_path_factory.mktemp("html")
    sweep = fake_sweep(root / "sweep")
    repro = root / "reproduce.json"
    repro.write_text(json.dumps([{"id": "pgd_at cifar10 AA", "paper": 0.4446, "ours_mean": 0.439, "ours_std": 0.004,
                                  "verdict": "reproduced"},
                                 {"id": "ca_at cifar10 AA", "paper": 0.45, "ours_mean": 0.41, "ours_std": None,
                                  "verdict": "not reproduced", "note": "1 seed"}]))
    out = root / "report"
    assert main(["report", str(sweep), "--out", str(out), "--html", "--reproduce", str(repro)]) == 0
    return out / "index.html"


def test_index_html_is_self_contained_and_complete(page):
    text = page.read_text()
    assert not re.search(r"(src|href)=\"(?!data:)", text) and "http://" not in text and "https://" not in text
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(imgs) >= 1 + 2 + 8   # the front, the curves and conflict figures, each run's curves
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in imgs)
    for section in ("Fronts", "Results", "Reproduction: paper | ours | verdict", "Training curves and diagnostics",
                    "Evaluations: provenance and gradient-masking checks"):
        assert f">{section}</h2>" in text, section
    head = re.search(r'<table class="sortable"><thead><tr>(.*?)</tr>', text).group(1)
    assert re.findall(r">([^<]+)</th>", head) == ["run", "method", "knob", "clean", "PGD", "AA", "Mean", "NRR", "n",
                                                  "ε", "protocol", "WA", "selection", "seed"]
    assert "32/255 (0.1255)" in text and "hypervolume" in text and "beyond the seed noise" in text
    assert "not reproduced" in text and "0.4446" in text
    assert ">WARN<" in text and "gradient_free_not_stronger" in text


def test_bad_reproduce_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "reproduce.json"
    bad.write_text(json.dumps([{"id": "x"}]))
    rc = main(["report", str(fake_sweep(tmp_path / "s")), "--out", str(tmp_path / "o"), "--html", "--reproduce", str(bad)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "not a reproduction table" in err[0]


def chromium() -> str | None:
    return next((shutil.which(c) for c in ("chromium", "chromium-browser") if shutil.which(c)), None)


HEADLESS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run")


@pytest.mark.skipif(chromium() is None, reason="chromium is not installed (apt-get install chromium)")
def test_index_html_in_headless_chromium(page, tmp_path):
    """A desktop-width screenshot, the console clean, and every image decoded, as the browser reports it."""
    profile = tmp_path / "profile"
    shot = tmp_path / "shot.png"
    run = lambda *extra: subprocess.run(  # noqa: E731
        [chromium(), *HEADLESS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *extra,
         page.as_uri()], capture_output=True, text=True, timeout=120)
    r = run("--window-size=1440,2000", f"--screenshot={shot}", "--hide-scrollbars")
    assert shot.is_file(), r.stderr[-2000:]
    from matplotlib.image import imread
    img = imread(shot)
    assert img.shape[:2] == (2000, 1440) and img[..., :3].std() > 0.05   # the page drew something, not a blank
    console = lambda err: [l for l in err.splitlines() if "CONSOLE" in l or "Uncaught" in l]  # noqa: E731
    assert not console(r.stderr), console(r.stderr)
    broken = page.with_name("broken.html")   # the same check sees a script error when there is one
    broken.write_text(page.read_text().replace("</body>", "<script>no_such_function();</script></body>"))
    r2 = subprocess.run([chromium(), *HEADLESS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
                         f"--screenshot={tmp_path / 'b.png'}", broken.as_uri()], capture_output=True, text=True, timeout=120)
    assert any("no_such_function" in l for l in console(r2.stderr))
    # the DOM after scripts ran: every <img> decoded (naturalWidth > 0), reported into the title
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text().replace(
        "</body>", "<script>window.onload=function(){var i=Array.from(document.images);"
        "var seen=function(e){var r=e.getBoundingClientRect();return r.top<2000&&r.bottom>0&&r.width>600;};"
        "document.title='decoded '+i.filter(function(x){return x.complete&&x.naturalWidth>0;}).length+'/'+i.length"
        "+' front '+seen(i[0])+' table '+seen(document.querySelector('table.sortable'));};"
        "</script></body>"))
    dom = subprocess.run([chromium(), *HEADLESS, f"--user-data-dir={profile}", "--dump-dom", "--virtual-time-budget=5000",
                          "--window-size=1440,2000",
                          probe.as_uri()], capture_output=True, text=True, timeout=120).stdout
    n = len(re.findall(r"<img ", page.read_text()))
    # every image decoded; the front and the results table lie in the screenshot's 1440 x 2000 desktop view
    assert f"<title>decoded {n}/{n} front true table true</title>" in dom, re.search(r"<title>.*?</title>", dom)
