"""The install check: `secretlink serve` stops with one line when a page file is missing."""

import re
import shutil

import pytest

from secretlink.web.assets import WEBUI, MissingAssetError, check_installed


@pytest.fixture
def webui_copy(tmp_path):
    copy = tmp_path / "webui"
    shutil.copytree(WEBUI / "templates", copy / "templates")
    shutil.copytree(WEBUI / "static", copy / "static")
    return copy


def test_a_complete_install_passes(webui_copy):
    check_installed(webui_copy)


@pytest.mark.parametrize(
    "missing",
    [
        "static/build/send.js",
        "templates/base.html",
        "templates/inbox.html",
        "templates/_share.html",
    ],
)
def test_a_missing_page_file_or_included_partial_is_named(webui_copy, missing):
    (webui_copy / missing).unlink()
    with pytest.raises(MissingAssetError, match=re.escape(missing.split("/")[-1])):
        check_installed(webui_copy)


def test_an_empty_partial_is_refused(webui_copy):
    (webui_copy / "templates" / "_wipe.html").write_text("")
    with pytest.raises(MissingAssetError, match=r"_wipe\.html"):
        check_installed(webui_copy)
