# Prints the files of moto and every distribution it needs to serve S3, as
# installed on this machine, one absolute path a line: the local moto image copies them (no PyPI here).
import importlib.metadata as md
import re
import sys

seen = set()
# The S3 part of the server only: moto, its s3 extra, and the web app the server runs (not every service).
todo = [("moto", {"s3"}), ("flask", set()), ("flask-cors", set())]
while todo:
    name, extras = todo.pop()
    key = re.sub(r"[-_.]+", "-", name).lower()
    if key in seen:
        continue
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        continue
    seen.add(key)
    for path in dist.files or []:
        print(dist.locate_file(path))
    for req in dist.requires or []:
        spec, _, marker = req.partition(";")
        if "extra ==" in marker and not any(f"extra == \"{e}\"" in marker for e in extras):
            continue
        m = re.match(r"\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?", spec)
        if m:
            todo.append((m.group(1), set()))
print(f"{len(seen)} distributions", file=sys.stderr)
