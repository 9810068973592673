"""Progress of long loops: rate and time left, a bar on a terminal, a few periodic lines in a log file."""
from __future__ import annotations

import io

import keras
import numpy as np
import pytest

from pipeline.progress import KerasProgress, Progress, format_duration, format_rate, progress


class FakeClock:
    def __init__(self, now: float = 100.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def logged(total, steps, seconds_per_step, **options):
    """The lines a loop of ``steps`` steps of ``seconds_per_step`` each writes to a log (not a terminal)."""
    clock, lines = FakeClock(), []
    with Progress(total, "work", terminal=False, clock=clock, emit=lines.append, **options) as shown:
        for _ in range(steps):
            clock.advance(seconds_per_step)
            shown.update()
    return lines


def test_durations_and_rates_read_naturally():
    assert format_duration(0) == "0:00" and format_duration(125.4) == "2:05" and format_duration(3723) == "1:02:03"
    assert format_duration(None) == "?" and format_duration(float("inf")) == "?"
    assert format_rate(12.345, "step") == "12.3 steps/s"
    assert format_rate(2, "step") == "2.00 steps/s" and format_rate(1234.5, "token") == "1234 tokens/s" and format_rate(0.25, "step") == "4.0 s/step"


def test_a_line_every_tenth_with_rate_and_time_left():
    lines = logged(total=600, steps=600, seconds_per_step=0.5)  # a 5-minute epoch
    assert len(lines) == 10  # 10%, 20%, ... 90%, and the final line
    assert lines[0] == "work: 60/600 steps (10%), 2.00 steps/s, 0:30 elapsed, 4:30 left"
    assert lines[4] == "work: 300/600 steps (50%), 2.00 steps/s, 2:30 elapsed, 2:30 left"
    assert lines[-1] == "work: 600/600 steps (100%), 2.00 steps/s, done in 5:00"


def test_a_fast_loop_does_not_flood_the_log():
    # 100,000 steps in 20 s: the tenths come faster than the minimum gap of 5 s, so only every ~5 s is a line.
    lines = logged(total=100_000, steps=100_000, seconds_per_step=0.0002)
    assert 3 <= len(lines) <= 5
    assert lines[-1].endswith("done in 0:20")


def test_a_slow_loop_still_reports_every_minute():
    # 20 steps of 30 s: one tenth is 2 steps = 60 s, and the minute rule gives the same cadence, never more.
    lines = logged(total=20, steps=20, seconds_per_step=30)
    assert len(lines) == 10
    lines = logged(total=4, steps=4, seconds_per_step=150)  # a quarter takes 2.5 min: a line each step anyway
    assert lines[0] == "work: 1/4 steps (25%), 150.0 s/step, 2:30 elapsed, 7:30 left"


def test_without_a_total_it_reports_every_minute_without_time_left():
    lines = logged(total=None, steps=50, seconds_per_step=10)
    assert lines[0] == "work: 6 steps, 10.0 s/step, 1:00 elapsed"
    assert len(lines) == 9  # 8 minutes of work -> 8 periodic lines and the final one
    assert "left" not in " ".join(lines)


def test_postfix_values_appear_on_the_line():
    clock, lines = FakeClock(), []
    shown = Progress(10, "fit", terminal=False, clock=clock, emit=lines.append)
    for _ in range(10):
        clock.advance(1)
        shown.update(loss=0.123456)
    shown.close()
    shown.close()  # twice is harmless
    assert lines[-1] == "fit: 10/10 steps (100%), 1.00 steps/s, done in 0:10, loss 0.1235"


def test_a_terminal_gets_a_tqdm_bar_and_no_log_lines():
    stream, lines = io.StringIO(), []
    items = list(progress(range(30), "embed", stream=stream, terminal=True, emit=lines.append, unit="batch"))
    assert items == list(range(30)) and lines == []
    assert "embed" in stream.getvalue() and "30/30" in stream.getvalue()


def test_a_file_stream_is_not_a_terminal(tmp_path):
    with open(tmp_path / "log.txt", "w") as handle:
        shown = Progress(3, "x", stream=handle)
        assert shown.bar is None
        shown.close()


def test_keras_progress_reports_each_epoch_of_fit():
    clock, lines = FakeClock(), []

    class Ticking(keras.callbacks.Callback):  # every training step takes one fake second
        def on_train_batch_begin(self, batch, logs=None):
            clock.advance(1.0)

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.zeros((40, 3), "float32"), np.zeros((40, 1), "float32")
    shown = KerasProgress("train", terminal=False, clock=clock, emit=lines.append)
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[Ticking(), shown])
    # 10 steps of 1 s per epoch: tenths come every second, under the 5-second minimum gap -> one line at 5 s.
    assert lines[0].startswith("train epoch 1/2: 5/10 steps (50%), 1.00 steps/s, 0:05 elapsed, 0:05 left, loss ")
    epoch_lines = [line for line in lines if " in 0:10 " in line]
    assert [line.split(":")[0] for line in epoch_lines] == ["train epoch 1/2", "train epoch 2/2"]
    assert epoch_lines[0].startswith("train epoch 1/2: 10 steps in 0:10 (1.00 steps/s), {'loss': ")
    assert len(lines) == 4


@pytest.mark.parametrize("total", [0, None])
def test_an_empty_loop_writes_nothing(total):
    lines = []
    with Progress(total, "nothing", terminal=False, emit=lines.append):
        pass
    assert lines == []
