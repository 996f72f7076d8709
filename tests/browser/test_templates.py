"""Every template parses, and the shared page chrome carries the CSRF token and versioned assets."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import pytest
from jinja2 import Environment, FileSystemLoader, select_autoescape

from ui.charts import executions_chart
from ui.render import static

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
ALL = sorted(str(p.relative_to(TEMPLATES)) for p in TEMPLATES.rglob("*.html"))


@pytest.fixture(scope="module")
def env() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))


@pytest.mark.parametrize("name", ALL)
def test_template_parses(env, name):
    env.get_template(name)


def test_login_page_has_csrf_and_versioned_assets(env):
    html = env.get_template("pages/login.html").render(
        static=static,
        csrf="tok123",
        csrf_header="X-CSRF-Token",
        principal=None,
        error="Wrong <b>password</b>",
        next="/flows",
    )
    assert '<meta name="csrf-token" content="tok123">' in html
    assert 'name="_csrf" value="tok123"' in html
    assert "/static/css/app.css?v=" in html and "/static/vendor/htmx-2.0.11.min.js?v=" in html
    assert "Wrong &lt;b&gt;password&lt;/b&gt;" in html


def test_static_url_changes_with_content():
    assert static("js/editor.js") != static("js/app.js")
    assert static("js/editor.js").split("?v=")[1] != "missing"


def test_logs_chart_counts_and_rates(env):
    from datetime import datetime, timedelta

    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    events = [
        ((now - timedelta(minutes=30)).isoformat(), True),
        ((now - timedelta(minutes=20)).isoformat(), False),
        ((now - timedelta(hours=5)).isoformat(), True),
        ((now - timedelta(hours=30)).isoformat(), True),
    ]
    chart = executions_chart(events, hours=24, now=now)
    assert sum(b.count for b in chart.bars) == 3
    assert chart.bars[-1].count == 2 and chart.bars[-1].rate == 0.5
    html = env.get_template("partials/logs_results.html").render(chart=chart, runs=[], log_page=None)
    assert html.count("<rect") == 24 and "<polyline" in html
