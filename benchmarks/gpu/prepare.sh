#!/usr/bin/env bash
# Prepare what the GPU machine cannot download (docs/gpu.md), on a machine with a package index:
#   .data/cifar10-jpeg.tar.gz   the CIFAR-10 archive (default source: ../shared/datasets/cifar10-jpeg.tar.gz,
#                               relative to the repository root)
#   .whl/site/pyautoattack/     pyautoattack 0.2.0, unpacked from its wheel without examples/ (a 42 MB model file)
#   .whl/site/pytest/           pytest with pluggy and iniconfig; .whl/site/pygments/, .whl/site/packaging/
#                               (pytest's other dependencies), all unpacked (pure Python)
#   .whl/commit                 the commit of this checkout (+ "-dirty" with uncommitted changes to tracked
#                               files), recorded by run.sh in gpu_run.json: run prepare.sh after the last commit
# run.sh puts a folder on PYTHONPATH only when the machine lacks that module.
# Both folders are git-ignored; pass them to the device tool as carry: [".data", ".whl"] (64 MiB in all).
#
#   bash benchmarks/gpu/prepare.sh [ARCHIVE]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
ARCHIVE="${1:-../shared/datasets/cifar10-jpeg.tar.gz}"
PY="${PYTHON:-$(command -v python3 || command -v python)}"
mkdir -p .data .whl/site
cp -f "$ARCHIVE" .data/cifar10-jpeg.tar.gz
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --dest "$tmp" \
    pyautoattack==0.2.0 pytest pluggy iniconfig pygments packaging
"$PY" - "$tmp" <<'PYEOF'
import pathlib, shutil, sys, zipfile
tmp, site = pathlib.Path(sys.argv[1]), pathlib.Path(".whl/site")
groups = {"pyautoattack": ["pyautoattack"], "pytest": ["pytest", "pluggy", "iniconfig"], "pygments": ["pygments"],
          "packaging": ["packaging"]}
for folder, dists in groups.items():
    dest = site / folder
    shutil.rmtree(dest, ignore_errors=True)
    for dist in dists:
        whl = next(tmp.glob(f"{dist}-*.whl"))
        with zipfile.ZipFile(whl) as z:
            for name in z.namelist():
                if not name.startswith("pyautoattack/examples/"):
                    z.extract(name, dest)
        print(f"{whl.name} -> {dest}")
PYEOF
commit="$(git rev-parse HEAD)"
git diff --quiet HEAD -- || commit="$commit-dirty"
echo "$commit" > .whl/commit
echo "commit: $commit (.whl/commit)"
git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | awk '{printf "tracked files: %.1f MiB\n", $1/1048576}'
du -sb .data .whl | awk '{printf "%s: %.1f MiB\n", $2, $1/1048576}'
echo "carry: [\".data\", \".whl\"]  (the device tool copies at most 64 MiB with the working tree)"
