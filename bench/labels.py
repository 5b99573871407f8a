"""How the student should learn the teacher's labels: label.targets and label.min_confidence, on finished runs.

A run's stage-2 inputs (the bundle and the kept synthetic inputs, read from the store through the run folder's
index.json) are labelled once by the teacher; each variant then distills a fresh adapter on the target with the
run's distillation settings and is scored with lm-eval on the run's test split. The task's checker (measurement
only) gives the label accuracy and the share of kept inputs each variant teaches from. Upstream stages are not
rerun, so a variant costs one distillation and one evaluation (about 2-5 minutes on 2 cores).

    .venv/bin/python bench/labels.py --runs runs/demo-s0 runs/demo-s2 --variants hard:0.8 weighted:0 soft:0

A variant is `targets[@temperature]:min_confidence[:n_keep[:epochs]]` (soft@0.5: soft targets sharpened at
temperature 0.5, label.temperature): n_keep teaches from the first n kept inputs only (what
filter.n_keep=n keeps, since synthesis runs in order; empty for all), epochs overrides distill_train.epochs.
`+aux=C` turns on the weak-to-strong auxiliary confidence loss at weight C (distill_train.aux_confidence).
`+cross=W` relabels by cross-fitted self-training: students distilled on one half of the kept inputs answer the
other half, and each label becomes (1 - W) x the teacher's distribution + W x the held-out student's.
`+avg=K` distills K students (other seeds) and averages them into one LoRA adapter (the exact mean of their weight
deltas, rank K x r). `+steps=N` trains N optimizer steps whatever the number of inputs (bench/scaling.py).
`+dtype=D` holds the target's frozen weights in D (float32 or bfloat16) while distilling (distill_train.base_dtype;
without it, the run's config says).
`+prior` makes the teacher's answer prior uniform over the inputs taught (one offset per answer choice).
`+agree` teaches only the inputs on which the teacher's answer is the target base's own (GAIR-NLP's
weak-to-strong-reasoning: train where the weak and the strong model agree); data-free.
`+truth` is the label oracle (measurement only): each kept input the task's checker can answer gets its right answer
as a certain label (the others keep the teacher's), so the student's score says what these inputs teach with
perfect labels; against the teacher-labelled student it splits the gap to the oracle into labels and inputs.
On a free-form task (the teacher generates its labels) the run's own labels are read, not made again; only `hard`
targets apply, and `+uncut` drops the labels that reached the label stage's token cap: an answer the teacher never
finished (dyck_languages' teacher repeats a bracket to the cap) is not an answer.
`+ratio` weights each input by the discriminator's odds that it is real (exp of its margin, clipped to [1/4, 4],
scaled to at most 1): an importance weight that moves the synthetic inputs toward the real ones' distribution.
Writes bench/results/labels.json and labels.md.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import quality  # bench/quality.py: the config of each of its cases
import yaml
from demo import per_example  # noqa: E402  # bench/demo.py: an evaluation folder's per-example scores
from pydantic import ValidationError

from translora import diagnostics, evaluation, labelling, models, training
from translora.artifacts import read_json, read_jsonl, write_json
from translora.bundle import Bundle
from translora.config import LabelSpec, load_config, validate_config
from translora.data.records import Example
from translora.data.sources import checker_for
from translora.stages.common import token_counter

OUT = Path(__file__).parent / "results"


def slot_path(run: Path, stage: str = "", slot_suffix: str = "") -> Path:
    """The run's latest output of `stage` (or of the slot ending in `slot_suffix`): a run folder that ran again with
    other settings keeps its earlier slots too."""
    slots = [
        s
        for k, s in read_json(run / "index.json")["slots"].items()
        if (stage and s["stage"] == stage) or (slot_suffix and k.endswith(slot_suffix))
    ]
    return Path(max(slots, key=lambda s: s["recorded_at"])["path"])


def eval_dtype(cfg) -> str:
    """The precision the run's own evaluations load the target in (translora/stages/evaluate.py): a student scored
    in another one is not comparable with the run's teacher (penguins_in_a_table: 0.26 in float32 against the
    run's bfloat16 0.22 before this matched them)."""
    return cfg.eval.dtype or cfg.target_model.dtype


def evaluate(cfg, card, data: Path, adapter: Path, work: Path) -> dict:
    test = [Example.model_validate(r) for r in read_jsonl(data / "test.jsonl")]
    name = evaluation.write_task(card, test, work / "lm_eval_task")
    target = cfg.target_model
    score = evaluation.evaluate(
        str(models.resolve(target)),
        work / "lm_eval_task",
        name,
        adapter,
        eval_dtype(cfg),
        cfg.eval.batch_size,
        cfg.eval.limit,
        target.trust_remote_code,
    )
    return score | {"dtype": eval_dtype(cfg)}


def run_config(run: Path, overrides: list[str], n_test: int = quality.N_TEST):
    """The config a run was made with: its config.yaml (written by scripts/demo.sh); for a bench/quality.py run
    folder (runs/bench/CASE-sSEED-MODE, no config.yaml) the case's own config as quality.py builds it, with
    `overrides` as its --set and `n_test` as its --n-test; otherwise (bench/demo.py's folders) the cpu profile with
    `overrides` and the seed the run's filter stage recorded."""
    if (run / "config.yaml").exists():
        return validate_config(yaml.safe_load((run / "config.yaml").read_text()))
    case, _, seed_mode = run.name.rpartition("-s")
    seed, _, mode = seed_mode.partition("-")
    if run.parent.name == "bench" and seed.isdigit() and mode in quality.MODES:
        return quality.case_config(case, int(seed), mode, n_test, overrides)
    seed = read_json(slot_path(run, "synthesize-and-filter") / "manifest.json")["config"]["seed"]
    return load_config("cpu", overrides=[f"seed={seed}", *overrides])


class Extras(NamedTuple):
    ratio: bool = False  # importance weights from the discriminator's margins
    aux: float = 0.0  # weak-to-strong auxiliary confidence loss weight
    cross: float = 0.0  # cross-fitted students' share of each label (self-training)
    average: int = 1  # students averaged into the transferred adapter
    steps: int | None = None  # optimizer steps, whatever the number of inputs (distill_train.max_steps)
    base_dtype: str | None = None  # the frozen target's precision while distilling (distill_train.base_dtype)
    prior: bool = False  # the teacher's answer prior made uniform over the inputs taught
    truth: bool = False  # the label oracle: the checker's answers where it has one (measurement only)
    uncut: bool = False  # free-form tasks: drop the generated labels that reached the token cap (never finished)
    agree: bool = False  # only the inputs on which the teacher and the target base give the same answer


def parse_variant(variant: str) -> tuple[LabelSpec, int | None, float | None, Extras]:
    """`targets[@temperature]:min_confidence[:n_keep[:epochs]][+ratio][+aux=C][+cross=W][+avg=K][+steps=N][+dtype=D]
    [+prior][+truth][+uncut][+agree]` -> (label settings, n_keep, epochs, extras), checked by the config's own
    rules, so a bad variant stops the bench before the teacher runs."""
    try:
        body, *suffixes = variant.split("+")
        extras = Extras()
        for extra in suffixes:
            name, _, value = extra.partition("=")
            if name == "ratio":
                extras = extras._replace(ratio=True)
            elif name == "aux":
                extras = extras._replace(aux=float(value))
            elif name == "cross" and 0 < float(value) <= 1:
                extras = extras._replace(cross=float(value))
            elif name == "avg" and int(value) >= 1:
                extras = extras._replace(average=int(value))
            elif name == "steps" and int(value) >= 1:
                extras = extras._replace(steps=int(value))
            elif name == "dtype" and value in ("float32", "bfloat16"):
                extras = extras._replace(base_dtype=value)
            elif name == "prior" and not value:
                extras = extras._replace(prior=True)
            elif name == "truth" and not value:
                extras = extras._replace(truth=True)
            elif name == "uncut" and not value:
                extras = extras._replace(uncut=True)
            elif name == "agree" and not value:
                extras = extras._replace(agree=True)
            else:
                raise ValueError(
                    f"bad suffix +{extra} (+ratio, +aux=C, +cross=W with 0 < W <= 1, +avg=K, +steps=N, +dtype=D, "
                    "+prior, +truth, +uncut, +agree)"
                )
        kind, cut, *rest = body.split(":")
        targets, _, temperature = kind.partition("@")
        label = LabelSpec(targets=targets, min_confidence=float(cut), temperature=float(temperature or 1))
        n_keep = int(rest[0]) if rest and rest[0] else None
        epochs = float(rest[1]) if len(rest) > 1 else None
    except (ValueError, ValidationError) as exc:
        raise SystemExit(
            f"bad variant {variant!r} (want targets[@temperature]:min_confidence[:n_keep[:epochs]]"
            f"[+ratio][+aux=C][+cross=W][+avg=K][+steps=N][+dtype=D][+prior][+truth][+uncut][+agree], "
            f"e.g. soft@0.5:0:128+aux=0.5): {exc}"
        ) from None
    return label, n_keep, epochs, extras


def student(cfg, spec, data: labelling.StudentData, seed: int, description: str):
    """A fresh adapter on the target, distilled on `data`; (peft model, tokenizer)."""
    base, tok = models.load_model(spec.base(cfg.target_model))
    peft_model = training.new_adapter(base, cfg.target_adapter, seed)
    training.train(peft_model, tok, data.pairs, spec, description, weights=data.weights, answers=data.answers)
    return peft_model, tok


def cross_fit(cfg, spec, card, labelled: list[labelling.Labelled], label: LabelSpec, share: float):
    """Self-training without memorisation: a student distilled on one half of the inputs answers the other half,
    and each input's label becomes (1 - share) x the teacher's distribution + share x that held-out student's.
    Where the student generalises past its teacher's mistakes, its answers on inputs it never saw correct them."""
    folds = [labelled[0::2], labelled[1::2]]
    relabelled: dict[str, dict[str, float]] = {}
    for i, held_out in enumerate(folds):
        taught = folds[1 - i]
        data = labelling.student_data(taught, label.targets, card, label.temperature)
        peft_model, tok = student(cfg, spec, data, spec.seed + 1 + i, f"cross-fit fold {i}")
        answers = labelling.label_choices(
            peft_model, tok, [x.input for x in held_out], card.choices, card.prompt_template, cfg.label.batch_size
        )
        relabelled |= {a.input: a.probs for a in answers}
    out = []
    for x in labelled:
        probs = {c: (1 - share) * x.probs[c] + share * relabelled[x.input][c] for c in x.probs}
        best = max(probs, key=probs.__getitem__)
        out.append(x.model_copy(update={"probs": probs, "completion": best, "confidence": probs[best]}))
    return out


def averaged(peft_models: list, out: Path) -> None:
    """The students' mean update as one LoRA adapter in `out` (peft's `cat` combination: the exact mean of their
    weight deltas, at rank K x r)."""
    first, names = peft_models[0], ["default"]
    for i, other in enumerate(peft_models[1:], 1):
        with tempfile.TemporaryDirectory() as tmp:
            other.save_pretrained(tmp)
            first.load_adapter(tmp, adapter_name=f"s{i}")
        names.append(f"s{i}")
    first.add_weighted_adapter(names, [1 / len(names)] * len(names), "mean", combination_type="cat")
    first.set_adapter("mean")
    for name in names:
        first.delete_adapter(name)
    first.save_pretrained(str(out), selected_adapters=["mean"])
    nested = out / "mean"  # peft writes a non-default adapter name into a subfolder
    for f in nested.iterdir():
        f.rename(out / f.name)
    nested.rmdir()


def uniform_prior(labels: list[labelling.ChoiceLabel]) -> list[labelling.ChoiceLabel]:
    """The labels with one offset added to each choice's score, the same for every input, such that averaged over
    these inputs every choice gets probability 1 / n_choices (the fixed point of prior matching: each offset moves by
    the log of the choice's target share over its current mean probability). A data-free correction of a labeller's
    preference for one answer whatever the input; measured on the demo, not adopted (bench/README.md)."""
    choices = list(labels[0].scores)
    offsets = dict.fromkeys(choices, 0.0)

    def shifted(x: labelling.ChoiceLabel) -> labelling.ChoiceLabel:
        scores = {c: s + offsets[c] for c, s in x.scores.items()}
        top = max(scores.values())
        exp = {c: math.exp(s - top) for c, s in scores.items()}
        probs = {c: e / sum(exp.values()) for c, e in exp.items()}
        best = max(probs, key=probs.__getitem__)
        return x.model_copy(update={"scores": scores, "probs": probs, "label": best, "confidence": probs[best]})

    for _ in range(500):
        mean = {c: sum(shifted(x).probs[c] for x in labels) / len(labels) for c in choices}
        step = {c: math.log(1 / len(choices)) - math.log(max(mean[c], 1e-12)) for c in choices}
        if max(step.values()) - min(step.values()) < 1e-7:
            break
        offsets = {c: offsets[c] + step[c] for c in choices}
    return [shifted(x) for x in labels]


def label_oracle(scored: labelling.ChoiceLabel, answer: str | None) -> labelling.ChoiceLabel:
    """The teacher's label replaced by the checker's answer, certain (an invalid input keeps the teacher's)."""
    if answer is None:
        return scored
    probs = {c: float(c == answer) for c in scored.probs}
    return scored.model_copy(update={"label": answer, "confidence": 1.0, "probs": probs})


def outcome(score: dict, source: list[float], start: float) -> dict:
    """A student's score on the run's test split, against the teacher's (paired), and the seconds it took."""
    transferred = [s[score["metric"]] for s in score["samples"]]
    return {
        "transferred": score["accuracy"],
        "interval": diagnostics.bootstrap_interval(transferred).model_dump(),
        "source_adapter": sum(source) / len(source),
        "transferred_minus_source": diagnostics.paired_bootstrap_difference(transferred, source).model_dump(),
        "seconds": round(time.time() - start, 1),
        "eval_dtype": score["dtype"],
    }


def generated_variants(run: Path, cfg, bundle: Bundle, variants: list[str]) -> list[dict]:
    """Students distilled on a free-form task's stored teacher labels (label.mode=generate), with or without the
    labels that reached the token cap."""
    card = bundle.card
    labelled = [labelling.Labelled.model_validate(r) for r in read_jsonl(slot_path(run, "label") / "labelled.jsonl")]
    cap = card.gen_tokens(cfg.label.max_new_tokens)
    count = token_counter(cfg.source_model)
    source = per_example(slot_path(run, slot_suffix="eval/source_adapter"))
    rows = []
    for variant in variants:
        label, n_keep, epochs, extras = parse_variant(variant)
        if label.targets != "hard" or n_keep or epochs or extras not in (Extras(), Extras(uncut=True)):
            raise SystemExit(f"{variant}: a free-form task takes hard:0 or hard:0+uncut")
        taught = [x for x in labelled if not (extras.uncut and count(x.completion) >= cap)]
        data = labelling.student_data(taught, "hard", card)
        start = time.time()
        peft_model, _ = student(cfg, cfg.distill_train, data, cfg.distill_train.seed, f"distill {variant}")
        with tempfile.TemporaryDirectory() as tmp:
            training.save_adapter(peft_model, Path(tmp) / "adapter")
            score = evaluate(cfg, card, slot_path(run, "prepare-data"), Path(tmp) / "adapter", Path(tmp))
        rows.append(
            {
                "run": str(run),
                "filtered": slot_path(run, "synthesize-and-filter").name[:12],
                "seed": cfg.seed,
                "variant": variant,
                "kept": len(labelled),
                "taught": len(taught),
                "training_rows": len(taught),
                "mean_weight": 1.0,
                "label_accuracy": diagnostics.LabelAccuracy(
                    accuracy=None, n_checked=0, n_invalid_inputs=0
                ).model_dump(),
            }
            | outcome(score, source, start)
        )
        print({k: rows[-1][k] for k in ("seed", "variant", "taught", "transferred", "source_adapter")}, flush=True)
    return rows


def run_variants(run: Path, variants: list[str], overrides: list[str], n_test: int = quality.N_TEST) -> list[dict]:
    cfg = run_config(run, overrides, n_test)
    bundle = Bundle(slot_path(run, "write-bundle"))
    if not bundle.card.choices:
        return generated_variants(run, cfg, bundle, variants)
    data_dir = slot_path(run, "prepare-data")
    filtered = slot_path(run, "synthesize-and-filter")
    inputs = [r["input"] for r in read_jsonl(filtered / "kept.jsonl")]
    margins = {
        r["input"]: r["margin"] for r in read_jsonl(filtered / "candidates.jsonl") if r.get("margin") is not None
    }
    check = checker_for(cfg.task.name)  # None: the task cannot check its inputs, so no label accuracy
    source = per_example(slot_path(run, slot_suffix="eval/source_adapter"))
    model, tok = models.load_model(cfg.source_model, scoring=True)
    teacher = training.attach_adapter(model, bundle.source_adapter)
    scored = labelling.label_choices(
        teacher, tok, inputs, bundle.card.choices, bundle.card.prompt_template, cfg.label.batch_size
    )
    del teacher, model
    parsed = [parse_variant(v) for v in variants]
    own = None  # the target base's answers, for +agree
    if any(extras.agree for *_, extras in parsed):
        model, tok = models.load_model(cfg.target_model, scoring=True)
        own = labelling.label_choices(
            model, tok, inputs, bundle.card.choices, bundle.card.prompt_template, cfg.label.batch_size
        )
        del model
    rows = []
    for variant, (label, n_keep, epochs, extras) in zip(variants, parsed):
        # The first n kept inputs are exactly what filter.n_keep=n would have kept: synthesis runs in order.
        first = scored[:n_keep] if n_keep else scored
        kept = len(first)
        if extras.agree and own is not None:
            first = [x for x, mine in zip(first, own) if x.label == mine.label]
        if extras.prior:
            first = uniform_prior(first)
        if extras.truth:
            if not check:
                raise SystemExit(f"{run}: +truth needs a task with a checker")
            first = [label_oracle(x, check.answer(x.input)) for x in first]
        spec = cfg.distill_train.model_copy(
            update={"aux_confidence": extras.aux}
            | ({"epochs": epochs} if epochs else {})
            | ({"max_steps": extras.steps} if extras.steps else {})
            | ({"base_dtype": extras.base_dtype} if extras.base_dtype else {})
        )
        chosen = labelling.select(first, label.min_confidence, cfg.label.balance, cfg.seed)
        labelled = labelling.as_labelled(chosen, len(bundle.card.choices), label.targets)
        start = time.time()
        if extras.cross:
            labelled = cross_fit(cfg, spec, bundle.card, labelled, label, extras.cross)
        data = labelling.student_data(labelled, label.targets, bundle.card, label.temperature)
        if extras.ratio:  # importance weights: the discriminator's odds that an input is real, clipped (training
            # wants weights in [0, 1]; each batch's loss is a weighted mean, so only their ratios matter)
            odds = [min(4.0, max(0.25, math.exp(margins[x.input]))) for x in labelled]
            data = data._replace(weights=[w * o / max(odds) for w, o in zip(data.weights, odds)])
        students = [
            student(cfg, spec, data, spec.seed + 10 * k, f"distill {variant}")[0] for k in range(extras.average)
        ]
        with tempfile.TemporaryDirectory() as tmp:
            if len(students) > 1:
                averaged(students, Path(tmp) / "adapter")
            else:
                training.save_adapter(students[0], Path(tmp) / "adapter")
            score = evaluate(cfg, bundle.card, data_dir, Path(tmp) / "adapter", Path(tmp))
        pairs, weights = data.pairs, data.weights
        accuracy = (
            diagnostics.label_accuracy([(x.input, x.completion) for x in labelled], check.answer)
            if check
            else diagnostics.LabelAccuracy(accuracy=None, n_checked=0, n_invalid_inputs=0)
        )
        starts = {}
        for x in labelled:  # which kinds of input the student is taught (first word: True, False, not, ( ...)
            starts[x.input.split()[0]] = starts.get(x.input.split()[0], 0) + 1
        rows.append(
            {
                "run": str(run),
                "filtered": filtered.name[:12],
                "seed": cfg.seed,
                "variant": variant,
                "kept": kept,
                "taught": len(labelled),
                "training_rows": len(pairs),
                "mean_weight": sum(weights) / len(weights),
                "label_accuracy": accuracy.model_dump(),
                "first_words": starts,
            }
            | outcome(score, source, start)
        )
        print({k: rows[-1][k] for k in ("seed", "variant", "taught", "transferred", "source_adapter")}, flush=True)
    return rows


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def markdown(rows: list[dict], commands: list[str]) -> str:
    lines = [
        "# Teacher labels: what the student learns from\n",
        "Commands:\n",
        *[f"    {c}" for c in commands],
        "",
        "Each row distills a fresh adapter on one finished run's kept inputs (the run's distillation settings) "
        "and scores it on the run's test split (lm-eval acc); intervals are 95% bootstrap, the "
        "difference is paired. `soft-rows` is label.targets=soft as it was before commit a82ac6b: one training "
        "row per answer choice, weighted by the teacher's probability; `soft` is one row per input with the "
        "teacher's distribution as the answer token's soft target (half the rows, the same gradient at the "
        "answer token). `kept inputs` names the synthesize-and-filter output a row distilled on (its store key); "
        "rows from before that column say `not recorded`: the demo-s* ones used the synthetic inputs of the "
        "runs in demo-float32-synthesis.md. `eval dtype` is the precision the student was scored in; the source + "
        "adapter column is the run's own evaluation, in its eval.dtype (bfloat16 in the cpu profile since "
        "5361c06): rows scored in float32 on such runs compare across precisions (up to 2 of 50 answers on "
        "penguins_in_a_table).\n",
        "| run | kept inputs (store key) | seed | variant | inputs taught (of kept) | training rows | mean weight | "
        "label accuracy (checked) | "
        "transferred | eval dtype | source + adapter | transferred - source | seconds |",
        "|---" * 13 + "|",
    ]
    for r in rows:
        d, i = r["transferred_minus_source"], r["interval"]
        lines.append(
            f"| {Path(r['run']).name} | {r.get('filtered', 'not recorded')} | {r['seed']} | {r['variant']} | "
            f"{r['taught']} of {r['kept']} | {r['training_rows']} | "
            f"{r['mean_weight']:.2f} | {_share(r['label_accuracy']['accuracy'])} ({r['label_accuracy']['n_checked']}) "
            f"| "
            f"{r['transferred']:.3f} [{i['low']:.3f}, {i['high']:.3f}] | {r.get('eval_dtype', 'float32')} | "
            f"{r['source_adapter']:.3f} | "
            f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] | {r['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", type=Path, required=True, help="finished run folders (with index.json)")
    ap.add_argument("--variants", nargs="+", default=["hard:0.8", "weighted:0", "soft:0"])
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        help="config overrides for run folders without config.yaml: a bench/quality.py run's --set, if it had any",
    )
    ap.add_argument(
        "--n-test", type=int, default=quality.N_TEST, help="a bench/quality.py run's --n-test, if not the default"
    )
    args = ap.parse_args()
    for variant in args.variants:
        parse_variant(variant)
    earlier = read_json(OUT / "labels.json") if (OUT / "labels.json").exists() else {}
    rows, commands = list(earlier.get("rows", [])), earlier.get("commands", [])
    command = "python bench/labels.py " + " ".join(sys.argv[1:])
    commands = commands if command in commands else [*commands, command]
    # A row counts as done only on the same kept inputs (a run folder that ran again has new ones) and scored in the
    # run's evaluation precision (rows without one were scored in float32, the target's own before eval.dtype).
    done = {(r["run"], r.get("filtered"), r["variant"], r.get("eval_dtype", "float32")) for r in rows}
    for run in args.runs:
        kept = slot_path(run, "synthesize-and-filter").name[:12]
        dtype = eval_dtype(run_config(run, args.overrides, args.n_test))
        todo = [v for v in args.variants if (str(run), kept, v, dtype) not in done]
        if todo:
            rows += run_variants(run, todo, args.overrides, args.n_test)
            write_json(OUT / "labels.json", {"commands": commands, "rows": rows})  # a kill keeps what was measured
    (OUT / "labels.md").write_text(markdown(sorted(rows, key=lambda r: (r["run"], r["variant"])), commands))


if __name__ == "__main__":
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    main()
