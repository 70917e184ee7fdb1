"""The soak (`zipmap bench soak`, issue 37) in small: a live stream and renders from a moving
camera in a real window, every sample and count it needs, and the summary's arithmetic."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from zipmap_core.bench.soak import growth_ratio, make_video, summarise

pytestmark = pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="the soak drives the studio's window: run the tests under xvfb-run")


def test_a_short_soak_streams_every_frame_renders_and_leaves_no_thread(tmp_path):
    video = make_video(tmp_path / "soak.mp4", 40)
    out = tmp_path / "soak.json"
    cmd = [sys.executable, "-m", "app.soak", str(video), "--json", str(out), "--renders", "12"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "QT_QPA_PLATFORM": "xcb"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    summary = summarise(json.loads(out.read_text()))
    assert summary["frames"] == 40 and summary["renders"] >= 12
    assert summary["errors"] == 0 and summary["threads_left"] == 0 and summary["problem"] is None
    assert summary["stream_scene_mb_per_frame"] > 0 and summary["peak_rss_mb"] > 100


def test_the_growth_ratio_compares_the_last_tenth_with_the_first_after_a_warm_up():
    flat = [100.0] * 10 + [200.0] * 90  # a warm-up (the first tenth) is left out
    assert growth_ratio(flat) == pytest.approx(1.0)
    rising = [100.0 + i for i in range(100)]  # after the warm-up 110..199: the last nine against the first nine
    assert growth_ratio(rising) == pytest.approx(sum(range(191, 200)) / sum(range(110, 119)))
