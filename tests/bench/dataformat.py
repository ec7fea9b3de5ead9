"""Scenario DF (issue 15): uploads past the hex ceiling with ``dataformat`` per direction.

Both rows on fresh processes, same run, 115200 baud, prompt wait 0.5 s: today's hex
upload, and text send / hex receive (``{send: text, recv: hex}``: a fixed-length text send
carries 1460 bytes for the one prompt wait that carries 730 in hex). The ``ceiling``
column of both is today's hex ceiling, so ``ratio`` is the multiple of it (target: 1.95).
"""

from __future__ import annotations

from tests.bench.ceiling import MAX_SEND, Line
from tests.bench.report import Row
from tests.bench.rig import RigSettings
from tests.bench.scenarios import (
    PROPOSED_GUARD,
    Context,
    _round_up,
    _settings_text,
    measure_upload,
)

#: Seconds of upload per row, per budget (smoke: none).
DF_SECONDS = {"full": 60.0, "quick": 15.0, "smoke": 0.0}
BAUD = 115200
#: (configuration value, the send format, the target as a multiple of the hex ceiling)
DF_ROWS = (("hex", "hex", 0.99), ("{send: text, recv: hex}", "text", 1.95))


def df(ctx: Context) -> None:
    seconds = DF_SECONDS.get(ctx.budget.name, 0.0)
    if seconds:
        for dataformat, send, target in DF_ROWS:
            df_upload(ctx, dataformat, send, target, seconds)


def df_upload(ctx: Context, dataformat: str, send: str, target: float, seconds: float) -> Row:
    hex_ceiling = Line(BAUD, "hex", ctx.budget.prompt).upload_ceiling()
    line = Line(BAUD, send, ctx.budget.prompt)
    total = _round_up(line.upload_ceiling() * seconds, MAX_SEND[send])
    what = f"upload {dataformat} {BAUD}".replace("{send: text, recv: hex}", "text/hex")
    row = Row("DF", what, _settings_text(line, PROPOSED_GUARD), ceiling=hex_ceiling)
    row.target = f"≥ {target:g} x hex ceiling"
    settings = RigSettings(BAUD, dataformat, line.prompt_wait, PROPOSED_GUARD, servers=("sink",))
    with ctx.rig(f"df-{send}", settings) as rig:
        record = measure_upload(rig, row, total, seconds)
    row.met = row.ratio is not None and row.ratio >= target and not record["errors"]
    return ctx.add(row, rig)
