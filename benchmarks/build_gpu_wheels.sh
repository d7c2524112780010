#!/usr/bin/env bash
# Builds .whl/: the wheels that gtaray's Ray path needs on the lent GPU machine (nvidia-h200:
# x86-64, its image's Python 3.12 and torch, no Ray, no network), where benchmarks/gpu_ray.sh
# installs them. Run it HERE, where PyPI can be reached:
#
#   bash benchmarks/build_gpu_wheels.sh                # download, strip ray, check, size
#   CHECK_ONLY=1 bash benchmarks/build_gpu_wheels.sh   # only the checks, on the .whl/ there is
#
# Then, in the device tool: run(command="bash benchmarks/gpu_ray.sh $OUT", carry=[".whl"]).
#
# What it does, in order:
#   1. pip download --no-deps of WHEELS below (cp312, manylinux x86-64; pure wheels for any
#      platform): ray[default,tune,train], optuna and gtaray's own dependencies, minus what the
#      image already has (KINDS.md's package list, copied into IMAGE below) and minus OMIT.
#      One version each, pinned to what .venv runs here.
#   2. Rewrites the ray wheel without ray/jars/ (Java workers only, ~31 MB) and the dashboard's
#      source maps, and drops those entries from its RECORD, so that pip installs it cleanly.
#   3. Checks the set: one version per package, tags that CPython 3.12 on x86-64 accepts, the
#      ray wheel's RECORD against its files (every hash), and the dependency closure (every
#      Requires-Dist met by the set, the image or OMIT; what the image must supply is listed).
#   4. Prints the wheels and their total, and fails over MAX_MIB (56): the repo travels too,
#      and a device call carries 64 MiB in all.
# gtaray itself is no wheel: the repo travels with every call, and gpu_ray.sh puts it on
# PYTHONPATH (Ray's workers inherit it).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}   # any Python with pip (packaging is taken from pip if absent)
[ -x "$PY" ] || PY=python3
MAX_MIB=${MAX_MIB:-56}
DEST=.whl

# Version pins: those of .venv here (pip freeze), where the test suite passes.
WHEELS=(
    ray==2.60.0
    # ray[default]
    aiohttp-cors==0.8.1 colorful==0.5.8 smart-open==9.0.2
    opencensus==0.11.4 opencensus-context==0.1.3
    google-api-core==2.44.0 google-auth==2.63.0 googleapis-common-protos==1.76.0
    proto-plus==1.29.0 pyasn1==0.6.5 pyasn1-modules==0.4.2
    opentelemetry-api==1.45.2 opentelemetry-sdk==1.45.2 opentelemetry-proto==1.45.2
    opentelemetry-semantic-conventions==0.66b2 opentelemetry-exporter-prometheus==0.66b2
    # ray core
    jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0
    rpds-py==2026.9.1
    # ray[tune,train]
    tensorboardX==2.6.5
    # ray[default,tune,train] and gtaray: pydantic 2
    pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
    # gtaray: optuna (Tune's OptunaSearch)
    optuna==5.0.0 colorlog==6.12.0
    # In the image, but carried anyway: googleapis-common-protos and proto-plus need
    # protobuf >= 6.33.5, and pydantic typing-extensions >= 4.16; the image's versions are
    # unknown here (both keep old APIs, so a newer one shadowing the image's is safe).
    protobuf==7.36.2 typing-extensions==4.16.0
)

# Required by the metadata but left out for size (18.7 MB with their own dependencies, named
# in brackets, which are not carried either), because nothing on gtaray's path imports them
# (an import audit of every Ray process of train, sweep, report, bench and ddp_equality here);
# pip's --no-deps does not ask for them.
#   py-spy: a binary the dashboard runs for stack dumps on request
#   virtualenv [distlib, platformdirs, python-discovery]: Ray's runtime_env pip/uv only
#   sqlalchemy, alembic [mako]: Optuna's RDB storage; Tune's OptunaSearch keeps its study in
#     memory (import optuna loads them lazily)
#   cryptography [cffi, pycparser]: google-auth's service-account signing only
OMIT="py-spy virtualenv sqlalchemy alembic cryptography"

# Dropped from the ray wheel: the Java workers' jars, and the dashboard's JavaScript source
# maps (a browser's debugger reads them; nothing else does).
export STRIP_PREFIX="ray/jars/" STRIP_UNDER="ray/dashboard/client/build/" STRIP_SUFFIX=".map"

# The image's Python packages (KINDS.md, "Python packages already there", read 2026-11-17).
IMAGE="absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs
botorch build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy
coverage cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax
e3nn einops equinox etils execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec
gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna imageio
iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib
kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown
markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict
multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13
nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir
onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker
prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing
pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout
pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors
scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers
setuptools shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard
tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch
torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope
triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt
xarray xxhash yarl zipp"

# pip matches each manylinux_2_N tag exactly: name the usual ones.
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
           --platform manylinux1_x86_64 --platform manylinux_2_24_x86_64
           --platform manylinux_2_31_x86_64 --platform manylinux_2_34_x86_64
           --platform manylinux_2_35_x86_64)

grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude

if [ -z "${CHECK_ONLY:-}" ]; then
    # A fresh staging folder, swapped in at the end: no stale second version, no half set.
    stage=$(mktemp -d "${TMPDIR:-/tmp}/gtaray-whl.XXXXXX")
    trap 'rm -rf "$stage"' EXIT
    # (The grep drops this machine's pip.conf noise about absent local indexes; pipefail
    # still fails the script when pip does.)
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --abi cp312 --abi abi3 --abi none "${PLATFORMS[@]}" \
        -d "$stage" "${WHEELS[@]}" 2>&1 |
        { grep -v "is ignored: it is neither a file nor a directory" || true; }

    # Strip the ray wheel: copy every other entry as is (its ZipInfo keeps the compression
    # and the executable bits), and drop the stripped files' rows from RECORD.
    "$PY" - "$stage"/ray-*.whl <<'EOF'
import csv, io, os, sys, zipfile
src = sys.argv[1]
tmp = src + ".tmp"
prefix, under, suffix = (os.environ[k] for k in ("STRIP_PREFIX", "STRIP_UNDER", "STRIP_SUFFIX"))

def stripped(name):
    return name.startswith(prefix) or (name.startswith(under) and name.endswith(suffix))

with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp, "w") as zout:
    names = zin.namelist()
    # The wheel's own RECORD: ray vendors packages whose dist-info folders have RECORDs too.
    record = next(n for n in names if n.count("/") == 1 and n.endswith(".dist-info/RECORD"))
    dropped = [n for n in names if stripped(n)]
    for info in zin.infolist():
        if stripped(info.filename):
            continue
        data = zin.read(info)
        if info.filename == record:
            rows = list(csv.reader(io.StringIO(data.decode())))
            kept = [r for r in rows if r and not stripped(r[0])]
            out = io.StringIO()
            csv.writer(out, lineterminator="\n").writerows(kept)
            data = out.getvalue().encode()
            print(f"ray wheel: RECORD {len(rows)} -> {len(kept)} rows")
        zout.writestr(info, data)
os.replace(tmp, src)
print(f"ray wheel: dropped {len(dropped)} entries: {', '.join(dropped)}")
print(f"ray wheel: now {os.path.getsize(src) / 2**20:.1f} MiB")
EOF
    rm -rf "$DEST"
    mkdir -p "$DEST"
    mv "$stage"/*.whl "$DEST"/
fi

# Checks: tags, one version per package, the ray wheel's RECORD, the dependency closure.
IMAGE="$IMAGE" OMIT="$OMIT" "$PY" - "$DEST" <<'EOF'
import base64, csv, hashlib, io, os, sys, tomllib, zipfile
from email.parser import Parser
try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name, parse_wheel_filename
except ImportError:  # any pip carries its own copy
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name, parse_wheel_filename

folder = sys.argv[1]
problems = []
image = {canonicalize_name(n) for n in os.environ["IMAGE"].split()}
omit = {canonicalize_name(n) for n in os.environ["OMIT"].split()}
prefix, under, suffix = (os.environ[k] for k in ("STRIP_PREFIX", "STRIP_UNDER", "STRIP_SUFFIX"))
# The GPU machine: CPython 3.12 on x86-64 Linux, glibc new enough for manylinux_2_35.
env = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
       "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
       "implementation_name": "cpython", "platform_python_implementation": "CPython"}

def accepted(tag):
    """Would pip on CPython 3.12, manylinux x86-64, install a wheel of this tag?"""
    interpreter, abi, platform = tag.interpreter, tag.abi, tag.platform
    if abi == "abi3":  # stable ABI: built for CPython 3.N <= 3.12
        if not (interpreter.startswith("cp3") and int(interpreter[3:]) <= 12):
            return False
    elif (interpreter, abi) not in (("cp312", "cp312"), ("py3", "none"), ("cp312", "none")):
        return False
    if platform == "any":
        return True
    if platform.startswith("manylinux_2_") and platform.endswith("_x86_64"):
        return int(platform.split("_")[2]) <= 35
    return platform in ("manylinux1_x86_64", "manylinux2010_x86_64", "manylinux2014_x86_64")

wheels = {}  # name -> (version, metadata, filename)
for f in sorted(os.listdir(folder)):
    if not f.endswith(".whl"):
        problems.append(f"{f}: not a wheel")
        continue
    name, version, _, tags = parse_wheel_filename(f)
    if not any(accepted(t) for t in tags):
        problems.append(f"{f}: no tag that CPython 3.12 on manylinux x86-64 accepts")
    if name in wheels:
        problems.append(f"{name}: two versions ({wheels[name][2]}, {f})")
    with zipfile.ZipFile(os.path.join(folder, f)) as z:
        meta = next(n for n in z.namelist()
                    if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
        wheels[name] = (version, Parser().parsestr(z.read(meta).decode()), f)

# The ray wheel: nothing stripped is left, and RECORD lists exactly its files, each hash right.
ray = wheels.get("ray")
if ray is None:
    problems.append("ray: no wheel")
else:
    with zipfile.ZipFile(os.path.join(folder, ray[2])) as z:
        names = set(z.namelist())
        record = next(n for n in names if n.count("/") == 1 and n.endswith(".dist-info/RECORD"))
        rows = {r[0]: r for r in csv.reader(io.StringIO(z.read(record).decode())) if r}
        left = [n for n in names | set(rows)
                if n.startswith(prefix) or (n.startswith(under) and n.endswith(suffix))]
        if left:
            problems.append(f"ray: {left[0]} (and {len(left) - 1} more) should be stripped")
        for n in sorted(set(rows) - names):
            problems.append(f"ray: RECORD lists {n}, not in the wheel")
        for n in sorted(n for n in names - set(rows) if not n.endswith("/")):
            problems.append(f"ray: {n} is not in RECORD")
        bad = 0
        for n in names & set(rows):
            _, digest, size = rows[n]
            if not digest:  # RECORD's own row
                continue
            algo, _, want = digest.partition("=")
            data = z.read(n)
            got = base64.urlsafe_b64encode(hashlib.new(algo, data).digest()).rstrip(b"=")
            if got.decode() != want or (size and int(size) != len(data)):
                bad += 1
        if bad:
            problems.append(f"ray: {bad} RECORD hashes or sizes do not match")
        print(f"ray wheel: {len(names)} files, RECORD {len(rows)} rows, every hash checked")

# The closure, from the roots: gtaray's dependencies (pyproject.toml), ray's extras included.
roots = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
todo = [(Requirement(r), "gtaray") for r in roots]
seen, from_image, omitted, used = set(), {}, {}, set()
while todo:
    req, parent = todo.pop()
    name = canonicalize_name(req.name)
    key = (name, str(req.specifier), frozenset(req.extras))
    if key in seen:
        continue
    seen.add(key)
    if name in wheels:
        used.add(name)
        version, meta, _ = wheels[name]
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            problems.append(f"{name} {version}: {parent} wants {req}")
        for text in meta.get_all("Requires-Dist") or []:
            dep = Requirement(text)
            extras = [""] + sorted(req.extras)
            if dep.marker is None or any(dep.marker.evaluate({**env, "extra": e}) for e in extras):
                todo.append((dep, f"{name}[{','.join(sorted(req.extras))}]" if req.extras else name))
    elif name in image:
        from_image.setdefault(name, set()).add(f"{req.specifier or 'any'} ({parent})")
    elif name in omit:
        omitted.setdefault(name, set()).add(parent)
    else:
        problems.append(f"{name}: needed by {parent} ({req}), not in the set, image or OMIT")

print("the image must supply (its versions are not known here):")
for name in sorted(from_image):
    print(f"  {name}: {'; '.join(sorted(from_image[name]))}")
print("omitted on purpose (OMIT: in the metadata, never imported on gtaray's path):")
for name in sorted(omitted):
    print(f"  {name}: wanted by {', '.join(sorted(omitted[name]))}")
for name in sorted(omit - set(omitted)):
    problems.append(f"{name}: in OMIT, but nothing asks for it (drop it from OMIT)")
for name in sorted(omit & set(wheels)):
    problems.append(f"{name}: in OMIT and in the set")
for name in sorted(set(wheels) - used):
    problems.append(f"{name}: in the set, but nothing needs it")
if problems:
    print("PROBLEMS:")
    for p in problems:
        print("  " + p)
    sys.exit(1)
print(f"closure: {len(wheels)} wheels; every requirement is met by the set, the image or OMIT")
EOF

# Sizes: the wheels, the repo's tracked files, and the limit.
ls -l "$DEST"/*.whl | awk '{ printf "%10d  %s\n", $5, $9 }'
wheels_b=$(du -cb "$DEST"/*.whl | tail -1 | cut -f1)
repo_b=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
echo "wheels: $(ls "$DEST"/*.whl | wc -l) files, $((wheels_b / 1024)) KiB ($((wheels_b / 1048576)) MiB);" \
    "repo (tracked): $((repo_b / 1024)) KiB; a device call carries at most 64 MiB"
if [ "$wheels_b" -gt $((MAX_MIB * 1024 * 1024)) ]; then
    echo "build_gpu_wheels: the wheels exceed ${MAX_MIB} MiB" >&2
    exit 1
fi
