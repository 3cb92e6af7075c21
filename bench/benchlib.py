# benchlib.py: what the benchmark scripts share: the Release build, the commit, a
# process's CPU time, and their own section of bench/RESULTS.md.
import os
import re
import subprocess

BENCH = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(BENCH)
RESULTS = os.path.join(BENCH, "RESULTS.md")


def build(dirname, *options):
    """Configure (once, with the cmake options given) and build the Release daemon and
    plugins in dirname."""
    if not os.path.exists(os.path.join(dirname, "CMakeCache.txt")):
        subprocess.run(["cmake", "-S", SRC, "-B", dirname, "-DCMAKE_BUILD_TYPE=Release"]
                       + list(options), check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", dirname, "-j2", "--target", "zhengtong"], check=True,
                   stdout=subprocess.DEVNULL)


def git_commit():
    r = subprocess.run(["git", "-C", SRC, "rev-parse", "--short=12", "HEAD"], capture_output=True,
                       text=True)
    return r.stdout.strip() or "?"


def cpu_seconds(pid):
    """user + system CPU seconds of a process and its threads, so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_section(name, text, path=RESULTS):
    """Put text between <!-- name --> and <!-- /name --> in RESULTS.md, replacing what was
    there and leaving the rest of the file alone (bench/run keeps such sections too)."""
    block = "<!-- %s -->\n%s\n<!-- /%s -->\n" % (name, text.strip("\n"), name)
    old = open(path).read() if os.path.exists(path) else "# Zhengtong benchmarks\n"
    m = re.search(r"<!-- %s -->.*?<!-- /%s -->\n?" % (name, name), old, re.S)
    new = old[: m.start()] + block + old[m.end():] if m else old.rstrip("\n") + "\n\n" + block
    with open(path, "w") as f:
        f.write(new)
