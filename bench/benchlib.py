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
    """HEAD, short, and whether the tree differs from it (the reports the benchmarks write
    do not count)."""
    def git(*args):
        return subprocess.run(["git", "-C", SRC] + list(args), capture_output=True,
                              text=True).stdout.strip()

    c = git("rev-parse", "--short=12", "HEAD") or "?"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".",
                ":!bench/RESULTS.md", ":!bench/PROFILE.md", ":!bench/CALLGRIND.md")
    return c + (" (with uncommitted changes)" if dirty else "")


def cpu_seconds(pid):
    """user + system CPU seconds of a process and its threads, so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


SECTION = r"<!-- ([\w-]+) -->.*?<!-- /\1 -->"  # what write_section writes


def kept_sections(text):
    """The sections write_section put in text, each whole, in order."""
    return [m.group(0) for m in re.finditer(SECTION, text, re.S)]


def write_section(name, text, path=RESULTS):
    """Put text between <!-- name --> and <!-- /name --> in RESULTS.md, replacing what was
    there and leaving the rest of the file alone (bench/run keeps such sections too)."""
    block = "<!-- %s -->\n%s\n<!-- /%s -->\n" % (name, text.strip("\n"), name)
    old = open(path).read() if os.path.exists(path) else "# Zhengtong benchmarks\n"
    assert re.fullmatch(r"[\w-]+", name), "kept_sections must find it again"
    m = re.search(r"<!-- %s -->.*?<!-- /%s -->\n?" % (name, name), old, re.S)
    new = old[: m.start()] + block + old[m.end():] if m else old.rstrip("\n") + "\n\n" + block
    with open(path, "w") as f:
        f.write(new)
