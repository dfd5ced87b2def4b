"""Measurement: one layer under one schedule, lowered to a Program and run on sim.rtl.

`Measurer` runs batches of candidates in worker processes (one Verilator model per worker and
config, built once and cached on disk by `sim.rtl`), each with a cycle limit so a hopeless
candidate stops early; a candidate that fails to lower, exceeds its limit, deadlocks or crashes
its worker is recorded with its error and never stops the search. Results already in the tuning
log for the same layer, config, hardware and DRAM model are reused instead of re-measured.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from boards.dram import DEFAULT, dram_model
from compiler.schedule import ConvSchedule
from compiler.tune.log import TuningRecord, append_records, read_records
from compiler.tune.tasks import TuneTask
from isa.config import HwConfig
from isa.errors import CycleLimitError, LoomError

_SIMS: dict = {}  # per worker process: (config, DRAM model) -> RtlSim


def _simulator(cfg: HwConfig, dram: str):
    from sim.rtl import RtlSim

    key = (cfg, dram)
    if key not in _SIMS:
        _SIMS[key] = RtlSim(cfg, dram)
    return _SIMS[key]


def measure_cycles(task: TuneTask, schedule: ConvSchedule, dram: str = DEFAULT,
                   max_cycles: int | None = None) -> tuple[int | None, str | None]:
    """Cycles of the layer under `schedule` on sim.rtl, or (None, why it has none)."""
    try:
        program = task.lower(schedule).program
        sim = _simulator(task.cfg, dram)
        sim.max_cycles = (1 << 63) if max_cycles is None else max_cycles
        return sim.run(program).cycles, None
    except CycleLimitError:
        return None, f"exceeded {max_cycles} cycles"
    except LoomError as exc:
        return None, str(exc)


def _timed(task: TuneTask, schedule: ConvSchedule, dram: str, max_cycles: int | None):
    started = time.perf_counter()
    cycles, error = measure_cycles(task, schedule, dram, max_cycles)
    return cycles, error, time.perf_counter() - started


class Measurer:
    """Measures candidates in parallel, caching through a tuning log (JSON lines)."""

    def __init__(self, cfg: HwConfig, *, log: str | os.PathLike | None = None,
                 dram: str = DEFAULT, jobs: int | None = None):
        from sim.rtl import build_library

        self.cfg, self.log = cfg, log
        self.dram = dram_model(dram).name
        self.jobs = max(1, jobs or os.cpu_count() or 1)
        # built once, before the workers would each try; its cache key (config, Verilog,
        # harness, Verilator) names the hardware the cycles were measured on
        self.hardware = build_library(cfg).parent.name
        self.known: dict[tuple[str, ConvSchedule], TuningRecord] = {}
        if log is not None and os.path.exists(log):
            for record in read_records(log):
                if (record.config_id, record.hardware, record.dram) == (
                        cfg.config_id_hex, self.hardware, self.dram):
                    self.known[(record.layer, record.conv_schedule)] = record
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Measurer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker processes."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def cached(self, task: TuneTask, schedule: ConvSchedule) -> TuningRecord | None:
        """The logged measurement of this point, if any."""
        return self.known.get((task.key, schedule))

    def measure(self, task: TuneTask, schedules: list[ConvSchedule],
                max_cycles: int | None = None) -> list[TuningRecord]:
        """Records for every schedule (from the log where known), appended to the log."""
        records: dict[ConvSchedule, TuningRecord] = {}
        todo = []
        for schedule in dict.fromkeys(schedules):
            known = self.cached(task, schedule)
            # a logged cycle-limit failure is reused only if the new limit is no higher
            if known is not None and (known.cycles is not None or _within(known, max_cycles)):
                records[schedule] = known
            else:
                todo.append(schedule)
        fresh = self._run(task, todo, max_cycles)
        for record in fresh:
            self.known[(task.key, record.conv_schedule)] = record
            records[record.conv_schedule] = record
        if self.log is not None:
            append_records(self.log, fresh)
        return [records[s] for s in schedules]

    def _record(self, task, schedule, cycles, error, seconds) -> TuningRecord:
        return TuningRecord(task.key, self.cfg.config_id_hex, schedule.to_dict(), cycles, error,
                            self.hardware, self.dram, round(seconds, 3))

    def _run(self, task: TuneTask, todo: list[ConvSchedule], max_cycles) -> list[TuningRecord]:
        if not todo:
            return []
        if self.jobs == 1:
            return [self._record(task, s, *_timed(task, s, self.dram, max_cycles)) for s in todo]
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.jobs)
        futures = [self._pool.submit(_timed, task, s, self.dram, max_cycles) for s in todo]
        records = []
        for schedule, future in zip(todo, futures, strict=True):
            try:
                result = future.result()
            except BrokenProcessPool as exc:  # a worker died: record it, start a new pool
                result = (None, f"worker crashed: {exc}", 0.0)
                self.close()
            records.append(self._record(task, schedule, *result))
        return records


def _within(record: TuningRecord, max_cycles: int | None) -> bool:
    """True when a failed record stays valid under a cycle limit of `max_cycles`."""
    if not (record.error or "").startswith("exceeded "):
        return True  # failures other than the limit do not depend on it
    limit = int(record.error.split()[1])
    return max_cycles is not None and max_cycles <= limit
