"""The tour page: every registered family has a section with a picture and a measured figure.

The quick tour (every budget cut) runs once for the module; the page is parsed, and, where
Debian's ``chromium`` is installed, rendered by headless Chromium to a screenshot (the test
skips cleanly without it: ``apt-get install chromium`` to run it).
"""

import base64
import html.parser
import io
import shutil
import subprocess

import pytest

import probgen
from probgen import gallery


class _Sections(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.sections, self.current = {}, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.current = self.sections.setdefault(attrs["id"], {"verdict": attrs.get("data-verdict"), "images": [],
                                                                  "figures": 0})
        elif tag == "img" and self.current is not None:
            self.current["images"].append(attrs["src"])
        elif tag == "tr" and self.current is not None:
            self.current["figures"] += 1

    def handle_endtag(self, tag):
        if tag == "section":
            self.current = None


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    out = tmp_path_factory.mktemp("tour")
    sections = gallery.run_tour(str(out), quick=True, echo=lambda line: None)
    return gallery.write_page(sections, str(out), quick=True), sections


def test_every_family_has_a_section_with_a_picture_and_a_figure(page):
    from PIL import Image

    path, sections = page
    parser = _Sections()
    parser.feed(open(path, encoding="utf-8").read())
    assert sorted(parser.sections) == probgen.models.available()
    for family, section in parser.sections.items():
        assert section["verdict"] in ("works", "limited"), (family, [s.note for s in sections if s.family == family])
        assert section["figures"] >= 1, family
        assert section["images"], f"{family}: no picture"
        for src in section["images"]:
            assert src.startswith("data:image/png;base64,")
            image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
            assert min(image.size) > 50 and len(set(image.convert("L").getdata())) > 2, family  # not blank
    for s in sections:
        assert s.code.strip(), f"{s.family}: no code shown"


def test_page_renders_in_headless_chromium(page, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium)")
    from PIL import Image

    shot = tmp_path / "page.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,2400",
                    f"file://{page[0]}"], check=True, capture_output=True, timeout=120)
    image = Image.open(shot).convert("L")
    assert image.size == (1200, 2400)
    assert len(set(image.getdata())) > 20  # text and pictures drawn, not an empty page
