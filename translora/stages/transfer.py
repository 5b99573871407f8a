"""Stage 2 (transfer), which reads only the bundle and the target model: synthesize-and-filter -> label -> distill
-> emit-bundle."""

from __future__ import annotations

import logging
import random

from tqdm.auto import tqdm

from translora import bundle as bundles
from translora import discriminator as disc
from translora import labelling, model_card, models, training
from translora.artifacts import read_json, read_jsonl, read_manifest, write_jsonl
from translora.config import AdapterSpec
from translora.errors import DataError, FilterExhaustedError
from translora.generation import GenerationRequest, open_generator
from translora.journal import Journal
from translora.stage import StageContext
from translora.stages.common import FILTER_FILE, Candidate, token_counter, train_new_adapter
from translora.synthesis import Synthesizer

log = logging.getLogger(__name__)


def synthesize_and_filter(ctx: StageContext) -> dict:
    """Target-model synthesis from the seeds, kept where the discriminator's margin exceeds the threshold calibrated
    in stage 1, until filter.n_keep are kept or filter.max_generated completions are spent. Candidates are
    journalled batch by batch, so a killed run resumes where it stopped. filter.mode picks the paper's ablations."""
    cfg = ctx.config
    bundle = bundles.Bundle(ctx.input("bundle"))
    mode, want, budget = cfg.filter.mode, cfg.filter.n_keep, cfg.filter.max_generated
    if not synthesizes(cfg.filter):
        inputs = bundle.seeds if mode == "seeds_only" else random_text(bundle.seeds, want, cfg.seed)
        write_jsonl(ctx.out / "candidates.jsonl", [Candidate(input=x, margin=0.0, kept=True) for x in inputs])
        write_jsonl(ctx.out / "kept.jsonl", [{"input": x} for x in inputs])
        return {"mode": mode, "generated": 0, "distinct": len(inputs), "kept": len(inputs), "acceptance_rate": 1.0}
    threshold = filter_threshold(bundle) if mode == "discriminator" else float("-inf")
    judge = disc.Discriminator.load(ctx.models["discriminator"], bundle.discriminator, bundle.card.name)
    journal = Journal(ctx.work / "candidates")
    rows, state = journal.load()
    candidates = [Candidate.model_validate(r) for r in rows]
    kept = sum(c.kept for c in candidates)
    with open_generator(cfg.generation, ctx.models["target"], None, "target synthesis", ctx.logs) as gen:
        synth = Synthesizer(
            gen, bundle.seeds, cfg.synthesis, seed=cfg.seed, count_tokens=token_counter(ctx.models["target"])
        )
        if state:
            synth.restore(state)
        bar = tqdm(total=want, initial=kept, desc="synthesize + filter (kept)", leave=False)
        while kept < want and synth.generated < budget:
            items = synth.draw(min(cfg.filter.batch_size, budget - synth.generated))
            batch = []
            for text, margin in zip(items, judge.margins(items, cfg.filter.batch_size)):
                keep = margin > threshold and kept < want
                kept += keep
                batch.append(Candidate(input=text, margin=margin, kept=keep))
            candidates += batch
            journal.append(batch, synth.state(), len(candidates))
            bar.update(kept - bar.n)
            bar.set_postfix(generated=synth.generated)
            if ctx.progress:
                ctx.progress(min(1.0, kept / want))
        bar.close()
    # The discriminator's acceptance counts every candidate it judged: the last batch's inputs after the quota
    # filled were judged too, and are not kept only because n_keep was reached.
    accepted = sum(c.margin > threshold for c in candidates)
    rate = accepted / max(1, len(candidates))
    if kept < want:
        # Which ran out: new inputs (the model keeps repeating itself) or the discriminator's acceptance.
        repeats = 1 - len(candidates) / max(1, synth.generated)
        hint = (
            f"{repeats:.0%} of the generations repeated an earlier input: raise synthesis.temperature, "
            "raise filter.max_generated or lower filter.n_keep"
            if repeats > 0.5
            else "raise filter.max_generated, lower filter.n_keep, or retrain the discriminator on more data"
        )
        raise FilterExhaustedError(
            f"the discriminator kept {kept} of {len(candidates)} distinct synthetic inputs ({rate:.1%} acceptance) "
            f"after {synth.generated} generations, fewer than filter.n_keep={want}; {hint}."
        )
    write_jsonl(ctx.out / "candidates.jsonl", candidates)
    write_jsonl(ctx.out / "kept.jsonl", [{"input": c.input} for c in candidates if c.kept])
    return {
        "mode": mode,
        "threshold": threshold if mode == "discriminator" else None,
        "generated": synth.generated,
        "generated_tokens": synth.tokens,
        "distinct": len(candidates),
        "kept": kept,
        "accepted": accepted,
        "acceptance_rate": rate,
        "resumed_candidates": len(rows),
    }


def filter_threshold(bundle: bundles.Bundle) -> float:
    """The threshold calibrated in stage 1 (0, the paper's p(yes) > p(no), for bundles made before calibration)."""
    file = bundle.discriminator / FILTER_FILE
    return float(read_json(file)["threshold"]) if file.exists() else 0.0


RANDOM_WORDS = (
    "time person year way day thing man world life hand part child eye woman place work week case "
    "point government company number group problem fact be have do say get make go know take see "
    "come think look want give use find tell ask seem feel try leave call good new first last long "
    "great little own other old right big high different small large next early young important"
).split()


def random_text(seeds: list[str], n: int, seed: int) -> list[str]:
    """The paper's "random" ablation: word salad as long as the seed inputs (in words), carrying nothing of the
    task."""
    rng = random.Random(seed)
    lengths = [max(1, len(s.split())) for s in seeds]
    return [
        " ".join(rng.choice(RANDOM_WORDS) for _ in range(rng.randint(min(lengths), max(lengths)))) for _ in range(n)
    ]


def synthesizes(filter_spec) -> bool:
    """Whether stage 2 generates synthetic inputs on the target (the ablations seeds_only and random_text do not)."""
    return filter_spec.mode in ("discriminator", "none")


def labels_by_generation(card, label_spec) -> bool:
    """Whether the teacher labels by generating (free-form tasks, or label.mode=generate); otherwise it scores the
    answer choices on torch. The fleet's shared vLLM servers follow the same rule."""
    return not (card.choices and label_spec.mode == "choices")


NO_ANSWER = "(no answer)"  # the label metrics' count of generated labels whose reasoning never gave an answer


def label(ctx: StageContext) -> dict:
    """The teacher (source model + source adapter) labels each kept input: on multiple-choice tasks by scoring every
    answer choice (label.mode=choices; the probability is kept, unsure labels can be dropped, classes balanced;
    with label.trust=lift the target base scores them too and is trusted unless the teacher's lift (labelling.lift)
    is clearly above its own; distill then keeps the target base or learns the target's answers, as
    label.when_target_trusted says), otherwise by greedy completion, with the
    card's generation settings (a chain-of-thought or code card writes up to its max_gen_tokens over several lines;
    the student then learns the whole completion)."""
    cfg = ctx.config
    bundle = bundles.Bundle(ctx.input("bundle"))
    card = bundle.card
    inputs = [r["input"] for r in read_jsonl(ctx.input("filtered") / "kept.jsonl")]
    cut = 0  # generated answers that reached their token cap
    trust: dict = {}  # whose answers were taught, and why (multiple-choice labels only)
    if not labels_by_generation(card, cfg.label):
        model, tok = models.load_model(ctx.models["teacher"], scoring=True)
        teacher = training.attach_adapter(model, bundle.source_adapter)
        choices = card.choices or []  # labels_by_generation is False only for a task with choices
        scored = labelling.label_choices(teacher, tok, inputs, choices, card.prompt_template, cfg.label.batch_size)
        del teacher, model
        trust = {
            "trusted": "teacher",
            "teacher_mean_confidence": labelling.mean_confidence(scored),
            "teacher_lift": labelling.lift(scored),
        }
        if cfg.label.trust == "lift":  # the target's own answers, as a second opinion on whom to trust
            model, tok = models.load_model(ctx.models["target"], scoring=True)
            own = labelling.label_choices(model, tok, inputs, choices, card.prompt_template, cfg.label.batch_size)
            del model
            gain = labelling.lift_gain(scored, own, cfg.seed)
            trust |= {
                "trusted": labelling.trusted(scored, own, cfg.seed),
                "target_mean_confidence": labelling.mean_confidence(own),
                "target_lift": labelling.lift(own),
                "lift_gain": gain.model_dump(),
            }
            if trust["trusted"] == "target":
                log.warning(
                    "the inputs do not move the teacher clearly further toward its answers than the target base (lift "
                    "%.3f against %.3f, gain %+.3f [%+.3f, %+.3f]): the student learns the target's answers, not the "
                    "teacher's",
                    trust["teacher_lift"],
                    trust["target_lift"],
                    gain.mean,
                    gain.low,
                    gain.high,
                )
                scored = own
        chosen = labelling.select(scored, cfg.label.min_confidence, cfg.label.balance, cfg.seed)
        rows = labelling.as_labelled(chosen, len(choices), cfg.label.targets)
    else:
        # The card's settings come with the bundle (an input), label.max_new_tokens with the declared section.
        request = GenerationRequest(
            max_new_tokens=card.gen_tokens(cfg.label.max_new_tokens),
            temperature=0.0,
            stop=card.stop_strings(),
            batch_size=cfg.label.batch_size,
        )
        with open_generator(
            cfg.generation, ctx.models["teacher"], bundle.source_adapter, "teacher labels", ctx.logs
        ) as gen:
            completions = gen.generate([card.prompt(x) for x in inputs], request)
        count = token_counter(ctx.models["teacher"])
        cut = sum(count(c) >= request.max_new_tokens for c in completions)
        if cut:  # the student learns cut answers (dates cut at "01/" by 4 tokens scored 0 on date_understanding)
            cap = "the task card's max_gen_tokens" if card.max_gen_tokens or card.multiline else "label.max_new_tokens"
            log.warning(
                "%d of %d teacher answers reached %d tokens and were cut; raise %s if the task's answers are longer",
                cut,
                len(completions),
                request.max_new_tokens,
                cap,
            )
        rows = [labelling.Labelled(input=x, completion=c.strip()) for x, c in zip(inputs, completions) if c.strip()]
    if not rows:
        raise DataError(
            "the teacher labelled none of the kept inputs (empty completions, or none as sure as "
            "label.min_confidence); raise label.max_new_tokens or lower label.min_confidence"
        )
    answers: dict[str, int] = {}
    for r in rows if card.metric != "code_execution" else []:  # programs are no answers to count
        # a reasoning's answer, not the whole reasoning (GSM8K's teacher wrote 44 distinct ones, most never ending)
        key = card.extracted_answer(r.completion) or NO_ANSWER
        answers[key] = answers.get(key, 0) + 1
    write_jsonl(ctx.out / "labelled.jsonl", rows)
    confidences = [r.confidence for r in rows if r.confidence is not None]
    return {
        "labelled": len(rows),
        "dropped": len(inputs) - len(rows),
        "answers": answers,
        "cut_at_max_new_tokens": cut,
        "mean_confidence": sum(confidences) / len(confidences) if confidences else None,
    } | trust


def keeps_base(labels: dict, label_spec, adapter: AdapterSpec) -> bool:
    """Whether the transfer is the target base unchanged: label.trust picked the target, and a zero update exists
    for the adapter kind (LoRA and DoRA start as the identity; prompt tuning's virtual tokens always change the
    output)."""
    return (
        labels.get("trusted") == "target"
        and label_spec.when_target_trusted == "keep_base"
        and adapter.kind in ("lora", "dora")
    )


def distill(ctx: StageContext) -> dict:
    """A fresh adapter on the target model, trained on the teacher's completions (completion tokens only); or, when
    the target base was trusted over the teacher (keeps_base), that fresh adapter untrained: a zero update."""
    cfg = ctx.config
    bundle = bundles.Bundle(ctx.input("bundle"))
    rows = [labelling.Labelled.model_validate(r) for r in read_jsonl(ctx.input("labelled") / "labelled.jsonl")]
    pairs, weights, answers = labelling.student_data(rows, cfg.label.targets, bundle.card, cfg.label.temperature)
    target = ctx.models["base"]
    filtered = read_manifest(ctx.input("filtered")).metrics
    labels = read_manifest(ctx.input("labelled")).metrics
    student = "target base kept" if keeps_base(labels, cfg.label, cfg.target_adapter) else "trained"
    if student == "trained":
        _, _, result = train_new_adapter(
            ctx, target, cfg.target_adapter, cfg.distill_train, pairs, "distill", weights, answers
        )
    else:
        log.warning(
            "label.trust picked the target base: the transferred %s adapter is a zero update (the target base "
            "unchanged; label.when_target_trusted=learn_its_answers trains on the target's own answers instead)",
            cfg.target_adapter.kind,
        )
        model, _ = models.load_model(target)
        training.save_adapter(training.new_adapter(model, cfg.target_adapter, cfg.distill_train.seed), ctx.out)
        result = None
    model_card.write(
        ctx.out,
        f"{bundle.card.name} adapter, transferred to {model_card.base_name(target)}",
        target,
        f"A {cfg.target_adapter.kind} adapter distilled by translora (Trans-LoRA) from the source adapter of bundle "
        f"{bundle.hash[:12]} on {model_card.base_name(bundle.info.source_model)}, without the task's training data."
        + (
            ""
            if student == "trained"
            else " The source adapter's answers did not follow the task's inputs clearly more than the target base's "
            "(label.trust=lift), so this adapter is a zero update: the target base unchanged."
        ),
        {
            "task": bundle.card.name,
            "source base": model_card.base_name(bundle.info.source_model),
            "source adapter": bundle.info.source_adapter_hash[:12],
            "bundle": bundle.hash[:12],
            "hops before this one": len(bundle.info.provenance),
            "filter": {k: filtered[k] for k in ("generated", "kept", "acceptance_rate")},
            "teacher labels": {
                "labelled": labels["labelled"],
                "answers": labels["answers"],
                "mean confidence": labels.get("mean_confidence"),
            },
            "distillation examples": len(pairs) if student == "trained" else 0,
            "final loss": result.final_loss if result else "not trained (zero update)",
        },
    )
    return (result.metrics() if result else {"steps": 0, "examples": 0}) | {"student": student}


def emit_bundle(ctx: StageContext) -> dict:
    """The transferred adapter as a new bundle (same discriminator, seeds and card), so transfers chain."""
    previous = bundles.Bundle(ctx.input("bundle"))
    target = ctx.models["target"]
    info = bundles.chain(
        previous, ctx.input("adapter"), target, models.fingerprint(target), ctx.out, ctx.config.trust.signing_key
    )
    return {"hops": len(info.provenance)}
