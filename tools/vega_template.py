"""Build .dvc/plots/offline.html: DVC's plots page with Vega, Vega-Lite and Vega-Embed inlined,
so that `dvc plots show` renders with no network (DVC's own page loads them from a CDN and draws
nothing offline). Pinned versions, each npm tarball checked against its SHA-256 before use.
`.dvc/config` points `plots.html_template` at the result. Re-run after changing a pin:

    python tools/vega_template.py            # downloads from registry.npmjs.org
    python tools/vega_template.py --from DIR # the three .tgz already in DIR
"""
from __future__ import annotations

import hashlib
import io
import sys
import tarfile
import urllib.request
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / ".dvc" / "plots" / "offline.html"
# package, version, the UMD build inside the tarball, SHA-256 of the tarball
PINS = (("vega", "6.4.0", "package/build/vega.min.js",
         "3521fb6ff68a94a40323954f0ba4484ba4014b157bfd37f89a3b063082320c42"),
        ("vega-lite", "6.4.3", "package/build/vega-lite.min.js",
         "24260f85e6f5bfe1069505f7c5c2b9863181ac413ef1030746f0a80c93991ce5"),
        ("vega-embed", "7.3.0", "package/build/vega-embed.min.js",
         "d9a958ced3240f0418df7d5e12e97dba6e63cecda15b8403e47a0db7eb6ea859"))
PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot (betasched, offline)</title>
    <!-- {pins} -->
{inlined}
    <style>
        table {{ border-spacing: 15px; }}
        img {{ max-width: 100%; height: auto; }}
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def tarball(name: str, version: str, folder: Path | None) -> bytes:
    file = f"{name}-{version}.tgz"
    if folder is not None:
        return (folder / file).read_bytes()
    with urllib.request.urlopen(f"https://registry.npmjs.org/{name}/-/{file}", timeout=60) as r:
        return r.read()


def build(folder: Path | None = None) -> str:
    scripts, pins = [], []
    for name, version, member, sha in PINS:
        blob = tarball(name, version, folder)
        got = hashlib.sha256(blob).hexdigest()
        if got != sha:
            raise SystemExit(f"{name}-{version}.tgz has SHA-256 {got}, not the pinned {sha}: refusing it")
        with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
            js = tar.extractfile(member).read().decode("utf8")
        scripts.append(f"    <script>/* {name} {version} */\n{js}\n    </script>")
        pins.append(f"{name}@{version} sha256:{sha}")
    # DVC fills the page with str.replace of {plot_divs} and {refresh_tag}; {scripts} (its CDN tags)
    # is left out on purpose. format() here only fills our own fields.
    return PAGE.format(refresh_tag="{refresh_tag}", plot_divs="{plot_divs}", pins="; ".join(pins),
                       inlined="\n".join(scripts))


if __name__ == "__main__":
    src = Path(sys.argv[2]) if sys.argv[1:2] == ["--from"] else None
    tmp = OUT.with_suffix(".html.tmp")
    tmp.write_text(build(src), encoding="utf8")
    tmp.replace(OUT)
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KiB)")
