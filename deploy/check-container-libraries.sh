#!/usr/bin/env bash
# Checks deploy/Containerfile against what the binary really needs, without building the image (CI has no container
# engine or registry):
# - the build stage installs every system package scripts/install.sh installs to build (headers of the C targets);
# - every shared library the binary loads, other than the Swift toolchain's own (linked statically in the image),
#   comes from a Debian package the runtime stage installs, or from one of their dependencies, or from the base
#   image's apt and its dependencies.
# Usage: deploy/check-container-libraries.sh [BINARY]   (default .build/debug/swiftdiffusion; .ci/run runs it)
set -euo pipefail
cd "$(dirname "$0")/.."
binary="${1:-.build/debug/swiftdiffusion}"
[ -x "$binary" ] || { echo "error: $binary not built" >&2; exit 1; }
toolchain_lib="$(dirname "$(dirname "$(readlink -f "$(command -v swift)")")")/lib"

python3 - "$binary" "$toolchain_lib" <<'PY'
import os, re, subprocess, sys

binary, toolchain = sys.argv[1], sys.argv[2]

def stages(path):
    text = open(path).read().replace("\\\n", " ")
    parts = re.split(r"(?m)^FROM ", text)[1:]
    return [p for p in parts]

def installed(stage):
    packages = []
    for command in re.findall(r"apt-get install([^&\n]*)", stage):
        packages += [t for t in command.split() if not t.startswith("-")]
    return packages

build, runtime = [installed(s) for s in stages("deploy/Containerfile")]
install_sh = open("scripts/install.sh").read()
wanted = re.search(r"packages=\(([^)]*)\)", install_sh).group(1).split()
missing_build = [p for p in wanted if p not in build]

def closure(names):
    out = subprocess.run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
                          "--no-breaks", "--no-replaces", "--no-enhances", "--no-pre-depends"] + names,
                         capture_output=True, text=True, check=True).stdout
    found = set()
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Depends:") or line.startswith("PreDepends:"):
            line = line.split(":", 1)[1].strip()
        if line and not line.startswith("<") and ":" not in line:
            found.add(line)
        elif line.startswith("|"):
            found.add(line[1:].strip())
    return found

available = closure(runtime + ["apt", "base-files", "libc6"])
problems = []
ldd = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
for line in ldd.splitlines():
    match = re.search(r"=> (/\S+)", line)
    if not match:
        continue
    path = match.group(1)
    if path.startswith(toolchain):
        continue
    real = os.path.realpath(path)  # through /etc/alternatives (OpenBLAS)
    candidates = {p for x in (path, real) for p in (x, x.replace("/usr/lib/", "/lib/", 1), x.replace("/lib/", "/usr/lib/", 1))}
    owners = set()
    for candidate in candidates:
        result = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
        if result.returncode == 0:
            owners |= {o.split(":")[0].strip() for o in result.stdout.split(": ")[0].split(", ")}
    if not owners:
        problems.append(f"{path}: no Debian package owns it")
    elif not owners & available:
        problems.append(f"{path}: from {', '.join(sorted(owners))}, which the runtime stage does not install")

for p in missing_build:
    problems.append(f"build stage lacks {p} (scripts/install.sh installs it to build)")
if problems:
    print("deploy/Containerfile does not match the binary:")
    for p in problems:
        print("  " + p)
    sys.exit(1)
print(f"deploy/Containerfile: build stage has scripts/install.sh's {len(wanted)} packages; "
      f"runtime stage ({', '.join(runtime)}) provides every library {binary} loads")
PY
