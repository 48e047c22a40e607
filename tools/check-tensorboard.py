"""Reads webtune's TensorBoard event files with TensorBoard's own reader and checks them.

    .venv/bin/python tools/check-tensorboard.py RUN_DIR [--log-history trainer_state.json] [--compare OTHER_RUN_DIR]

RUN_DIR is a logging_dir (output_dir/runs/<date>_<host>). The events are loaded with
tensorboard.backend.event_processing.event_accumulator.EventAccumulator (what `tensorboard --logdir` uses; it
checks each record's CRC and decodes the Event protos) and printed per tag. Checks:
  - the file starts with file_version "brain.Event:2" and every scalar is an old-style simple_value, as
    torch's SummaryWriter writes them (event_file_loader.LegacyEventFileLoader: the raw Event protos);
  - the text "args" is there (TensorBoardCallback.on_train_begin);
  - with --log-history (a trainer_state.json): every numeric value of every log_history entry is the scalar
    train/<key> or eval/<key> at its step (as float32), and there is no other scalar;
  - with --compare (e.g. the run `trl sft` wrote for the same config, tools/trl-compare.ts): both runs have the
    same tags (transformers' names) and the same steps per tag.
Exits 1 on a failed check.
"""
import argparse
import glob
import json
import os
import struct
import sys

from tensorboard.backend.event_processing import event_accumulator
from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader


def load(run_dir):
    acc = event_accumulator.EventAccumulator(run_dir, size_guidance={event_accumulator.SCALARS: 0, event_accumulator.TENSORS: 0})
    acc.Reload()
    return acc


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def rewrite(key):
    if key.startswith("eval_"):
        return "eval/" + key[5:]
    if key.startswith("test_"):
        return "test/" + key[5:]
    return "train/" + key


def main():
    p = argparse.ArgumentParser()
    p.add_argument("run_dir")
    p.add_argument("--log-history")
    p.add_argument("--compare")
    a = p.parse_args()
    problems = []
    files = sorted(glob.glob(os.path.join(a.run_dir, "events.out.tfevents.*")))
    if not files:
        sys.exit(f"no events.out.tfevents.* file in {a.run_dir}")
    for path in files:
        events = list(LegacyEventFileLoader(path).Load())
        if events[0].file_version != "brain.Event:2":
            problems.append(f"{path}: first event is not file_version brain.Event:2: {events[0]}")
        for e in events[1:]:
            for v in e.summary.value:
                if v.tag.endswith("/text_summary"):
                    continue
                if v.WhichOneof("value") != "simple_value":
                    problems.append(f"{path}: {v.tag} at step {e.step} is a {v.WhichOneof('value')}, not a simple_value")
        print(f"{path}: {len(events)} events")
    acc = load(a.run_dir)
    tags = acc.Tags()
    scalars = {t: [(s.step, s.value) for s in acc.Scalars(t)] for t in tags["scalars"]}
    for t, vals in sorted(scalars.items()):
        print(f"  {t:28s} " + "  ".join(f"{step}:{v:.6g}" for step, v in vals))
    texts = tags.get("tensors", [])
    print(f"  text: {texts}")
    if "args/text_summary" not in texts:
        problems.append(f"no args text (tags: {texts})")

    if a.log_history:
        with open(a.log_history) as f:
            history = json.load(f)["log_history"]
        expected = {}
        for entry in history:
            step = entry["step"]
            for k, v in entry.items():
                if k != "step" and isinstance(v, (int, float)):
                    expected.setdefault(rewrite(k), {})[step] = f32(v)
        for tag, by_step in expected.items():
            got = dict(scalars.get(tag, []))
            for step, v in by_step.items():
                if step not in got:
                    problems.append(f"{tag} at step {step}: missing (log_history has {v})")
                elif got[step] != v:
                    problems.append(f"{tag} at step {step}: {got[step]} in the event file, {v} in log_history")
        for tag in scalars:
            # The end-of-training metrics (train_loss, train_runtime, …) come after the last checkpoint's log_history.
            if tag not in expected and not tag.startswith("train/train_") and tag != "train/total_flos":
                problems.append(f"{tag}: in the event file but not in log_history")
        print(f"checked {sum(len(v) for v in expected.values())} values of {len(expected)} tags against {a.log_history}")

    if a.compare:
        other = load(a.compare)
        theirs = {t: [s.step for s in other.Scalars(t)] for t in other.Tags()["scalars"]}
        ours = {t: [s for s, _ in v] for t, v in scalars.items()}
        print(f"tags only in {a.compare}: {sorted(set(theirs) - set(ours))}")
        print(f"tags only in {a.run_dir}: {sorted(set(ours) - set(theirs))}")
        for t in sorted(set(theirs) & set(ours)):
            if theirs[t] != ours[t]:
                problems.append(f"{t}: steps {ours[t]} here, {theirs[t]} in {a.compare}")
        for t in sorted(set(theirs) & set(ours)):
            tv = {s.step: s.value for s in other.Scalars(t)}
            print(f"  {t:28s} " + "  ".join(f"{step}: {v:.6g} vs {tv.get(step, float('nan')):.6g}" for step, v in scalars[t]))

    for pr in problems:
        print("FAIL:", pr)
    if problems:
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
