"""The dashboard's scripts are native ES modules (no build step): the page loads ``app.js`` as a
module, and every module it imports, directly or through others, is served as JavaScript
(browsers refuse a module with any other MIME type). Every module file is reachable, so none is
dead weight in the wheel."""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from web.dashboard import STATIC

IMPORT = re.compile(r'^import\s.*?\sfrom\s+"(\.{1,2}/[^"]+)";', re.MULTILINE | re.DOTALL)
# aiohttp's own MIME table (the same on every system): application/javascript before Python 3.12
JAVASCRIPT = {"text/javascript", "application/javascript"}
ENTRY = re.compile(r'<script type="module" src="(/dashboard/static/[^"]+)"></script>')


async def test_every_module_is_served_as_javascript_and_reachable_from_the_page(make_api: Any) -> None:
    client = await make_api()
    page = await (await client.get("/")).text()
    entries = ENTRY.findall(page)
    assert entries == ["/dashboard/static/app.js"]
    seen: dict[str, str] = {}
    pending = list(entries)
    while pending:
        url = pending.pop()
        if url in seen:
            continue
        resp = await client.get(url)
        assert resp.status == 200, url
        assert resp.content_type in JAVASCRIPT, (url, resp.content_type)
        seen[url] = source = await resp.text()
        pending += [posixpath.normpath(posixpath.join(posixpath.dirname(url), path)) for path in IMPORT.findall(source)]
    on_disk = {
        "/dashboard/static/" + p.relative_to(STATIC).as_posix()
        for p in Path(STATIC).rglob("*.js")
        if "vendor" not in p.parts
    }
    assert set(seen) == on_disk
    assert len(on_disk) >= 10  # the router, the shared modules and one module per page


def test_each_dashboard_page_has_its_own_module() -> None:
    pages = {p.stem for p in (Path(STATIC) / "js" / "pages").glob("*.js")}
    assert pages == {"overview", "jobs", "job", "dead", "cron", "workers", "enqueue", "workflow"}
    for name in pages:
        source = (Path(STATIC) / "js" / "pages" / f"{name}.js").read_text()
        assert re.search(rf"^export async function {name}Page\(", source, re.MULTILINE), name
