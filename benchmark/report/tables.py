"""The report's tables (the leaderboard is in :mod:`benchmark.report.leaderboard`): the
table sections of the pretrained, retrained, image-quality, memorisation, re-identification and alignment stages,
every cell as display text; a stage that has not run is shown as missing with the command that writes it."""

from __future__ import annotations

from pathlib import Path

from benchmark.report.document import Figure, Section, Table
from benchmark.report.figures import _auroc_bars, _data_size_curves, _Figures, _quality_bars, _roc_figures
from benchmark.report.loading import (
    MISSING,
    STAGE_COMMANDS,
    _count,
    _finite,
    _fmt,
    _fmt_ci,
    _fmt_p,
    _Frame,
    _label,
    _positives,
    _Pretrained,
    _pretrained_rows,
    _run_folder,
    _stars,
)

# prevalence-free figures first (AUROC, sensitivity at a fixed specificity, recall, specificity), then the ones that
# depend on the prevalence of the images scored (precision, accuracy) and F1
PRETRAINED_METRICS: tuple[str, ...] = ("auroc", "sens_at_spec", "recall", "specificity", "precision", "accuracy", "f1")
#: the columns of the RoentGen-shaped table; mirrors ``benchmark.utility.retrained.TABLE_METRICS`` (not imported:
#: that module loads torch, which the report does not need).
RETRAINED_METRICS: tuple[str, ...] = ("auroc", "sens_at_spec", "recall", "specificity", "accuracy", "precision")


# ------------------------------------------------------------------------------------------ pretrained stage


def _pretrained_section(section: Section, view: _Pretrained | None, results: Path, figures: _Figures) -> None:
    if view is None:
        section.not_run(f"Not run yet: `{STAGE_COMMANDS['utility_pretrained']}` writes `utility_pretrained.csv` "
                        "(with nothing configured it runs the built-in demo).")
        return
    f = view.frame
    section.note("A pretrained classifier scores the real test images and the synthetic images made from the same "
                 "rows; each metric with its 95% CI (the rows' `ci_method` says which). Sensitivity, specificity and "
                 "AUROC do not depend on how common the class is among the images; precision and accuracy do, so "
                 "they are shown beside the prevalence and, for synthetic images, also at the real test prevalence. "
                 "'detectable' is the smallest real − synthetic AUROC difference these sizes detect with 80% power: "
                 "above 0.1 (marked ~) a 'no significant difference' does not mean 'equal'. The real test images "
                 "are shown once per classifier.")
    names = {"auroc": "AUROC", "sens_at_spec": "sens @ spec 0.90", "recall": "sensitivity"}
    columns = ["class", "images", "n (positives, prevalence)",
               *[names.get(m, m) + " [95% CI]" for m in PRETRAINED_METRICS],
               "precision at real prevalence", "real − synthetic AUROC [95% CI]", "p", "detectable"]
    for classifier in view.classifiers:
        rows = []
        for name in view.classes[classifier]:
            for label, i, _ in _pretrained_rows(view, classifier, name):
                head = [name, label, f"{_count(f.text('n').iloc[i])} ({_positives(f, i)}, "
                                     f"{_fmt(f.num('prevalence').iloc[i], 3)})"]
                if f.text("evaluable").iloc[i].lower() == "false":
                    reason = f.text("not_evaluable_reason").iloc[i]
                    rows.append(head + [f"not evaluable: {reason}"] + [""] * (len(columns) - 4))
                    continue
                cells = [_fmt_ci(f.num(m).iloc[i], f.num(f"{m}_ci_low").iloc[i], f.num(f"{m}_ci_high").iloc[i])
                         for m in PRETRAINED_METRICS]
                at_real = _fmt_ci(f.num("precision_at_real_prevalence").iloc[i],
                                  f.num("precision_at_real_prevalence_ci_low").iloc[i],
                                  f.num("precision_at_real_prevalence_ci_high").iloc[i])
                if f.text("prevalence_comparable").iloc[i].lower() == "false":
                    at_real += " (prevalence differs)"
                gap = _fmt_ci(f.num("auroc_diff_real_minus_synthetic").iloc[i], f.num("auroc_diff_ci_low").iloc[i],
                              f.num("auroc_diff_ci_high").iloc[i])
                mdd = f.num("auroc_mdd80").iloc[i]
                detectable = MISSING if not _finite(mdd) else f"{mdd:.2f}" + (" ~" if mdd > 0.1 else "")
                rows.append(head + cells + [at_real, gap, _fmt_p(f.num("auroc_diff_p_value").iloc[i]), detectable])
        mask = f.text("classifier") == classifier
        threshold = next((t for t in f.text("threshold_source")[mask] if t), "")
        caption = f"Classifier `{classifier}`" + (f"; threshold: {threshold}" if threshold else "")
        section.add(Table(columns, rows, caption))
        for flag_i in f.frame.index[mask & (f.text("sanity_flag") != "")]:
            section.warn(f"{f.text('class').iloc[flag_i]} ({classifier}): {f.text('sanity_flag').iloc[flag_i]}")
        leaky = sorted(set(f.text("leakage")[mask]) - {"", "none"})
        for status in leaky:
            section.warn(f"leakage ({classifier}): {status}")
        section.add(_auroc_bars(view, classifier, figures))
    _roc_figures(section, view, results, figures)


# ------------------------------------------------------------------------------------------- retrained stage


def _retrained_section(section: Section, frame: _Frame, figures: _Figures) -> None:
    if len(frame) == 0:
        section.not_run(f"Not run yet: `{STAGE_COMMANDS['utility_retrained']}` writes `utility_retrained.csv`.")
        return
    means = frame.text("seed") == "mean"
    if not means.any():
        section.not_run("`utility_retrained.csv` has no `seed = mean` rows (the stage writes them at the end of a "
                        "sweep): rerun the sweep to finish it.")
        return
    f = frame
    architecture = next((a for a in f.text("architecture")[means] if a), "DenseNet-121")
    keys = list(dict.fromkeys(zip(f.text("model_name")[means], f.text("extra_info")[means], strict=True)))
    names = {"auroc": "AUROC", "sens_at_spec": "sens @ spec 0.90", "recall": "sensitivity"}
    columns = ["setting", "n real", "n synthetic", "seeds (train +)",
               *[names.get(m, m) + " [95% CI] Δ vs real" for m in RETRAINED_METRICS], "detectable", "AUROC vs real"]
    for model, extra in keys:
        mine = means & (f.text("model_name") == model) & (f.text("extra_info") == extra)
        baseline = next((b for b in f.text("baseline")[mine] if b), "")
        family = next((h for h in f.text("holm_family")[mine] if h), "each metric over settings x classes")
        section.note(f"**{_label(model, extra)}**: retrained {architecture}, selected on real val and tested on real "
                     f"test images; mean over seeds [95% CI: seed spread + test-set sampling, patients resampled], "
                     f"then the change vs {baseline or 'the real baseline'} (seed-mean test, Welch t; Holm-adjusted "
                     f"within {family}: `*` p<0.05, `**` p<0.01, `***` p<0.001, `ns` not significant). Settings with "
                     "fewer than 3 seeds (`†`) get no test: their interval covers test-set sampling only. Accuracy "
                     "and precision are at the test prevalence given in each caption. 'detectable': the smallest "
                     "AUROC change these sizes detect with 80% power (above 0.1, `~`: 'ns' is not evidence of "
                     "equality).")
        for name in dict.fromkeys(f.text("class")[mine]):
            index = f.frame.index[mine & (f.text("class") == name)]
            first = index[0]
            rows = []
            for i in index:
                spec = f.text("setting_spec").iloc[i] or f.text("setting").iloc[i]
                cells = []
                for m in RETRAINED_METRICS:
                    cell = _fmt_ci(f.num(m).iloc[i], f.num(f"{m}_ci_low").iloc[i], f.num(f"{m}_ci_high").iloc[i])
                    diff = f.num(f"{m}_diff_vs_real").iloc[i]
                    if cell != MISSING and _finite(diff):
                        cell += f" {diff:+.3f}{_stars(f.num(f'{m}_p_vs_real_holm').iloc[i])}"
                    cells.append(cell)
                seeds = f.text("seeds").iloc[i]
                n_seeds = _count(f.text("n_seeds").iloc[i] or (str(len(seeds.split(","))) if seeds else ""))
                if n_seeds.isdigit() and int(n_seeds) < 3:
                    n_seeds += " †"
                if _finite(f.num("train_positives").iloc[i]):
                    n_seeds += f" ({f.num('train_positives').iloc[i]:.0f} +)"
                mdd = f.num("auroc_mdd80").iloc[i]
                detectable = MISSING if not _finite(mdd) else f"{mdd:.2f}" + (" ~" if mdd > 0.1 else "")
                rows.append([spec + (" (baseline)" if spec == baseline else ""), _count(f.text("n_real").iloc[i]),
                             _count(f.text("n_synthetic").iloc[i]), n_seeds, *cells, detectable,
                             f.text("auroc_vs_real").iloc[i]])
            prevalence = f.num("prevalence").iloc[first]
            caption = (f"{_label(model, extra)} / {name} (real test images: n={_count(f.text('n_test').iloc[first])}, "
                       f"{_positives(f, first)} positive"
                       + (f", prevalence {prevalence:.3f})" if _finite(prevalence) else ")"))
            section.add(Table(columns, rows, caption))
        section.add(_data_size_curves(f, mine, _label(model, extra), figures))


# ------------------------------------------------------------------------------------------ image quality


def detectability_line(value: float, low: float, high: float) -> str:
    """One sentence for a detectability figure: "a linear probe tells synthetic from real with AUROC 0.83 [0.79,
    0.87]" and what it means; empty when the figure or its interval is missing."""
    if not all(_finite(v) for v in (value, low, high)):
        return ""
    verdict = ("the synthetic images are detectably different from the real ones in this feature space" if low > 0.5
               else "no difference detected in this feature space (0.5 = indistinguishable)")
    return f"a linear probe tells synthetic from real with AUROC {value:.2f} [{low:.2f}, {high:.2f}]: {verdict}"


def _quality_section(section: Section, frame: _Frame, figures: _Figures) -> None:
    if len(frame) == 0:
        section.not_run(f"Not run yet: `{STAGE_COMMANDS['image_quality_metrics']}` writes "
                        "`image_quality_metrics.csv`.")
        return
    f = frame
    section.note("Synthetic images against the real images of the reference split in the extractor's feature "
                 "space, overall and per class (positives of the class on both sides). FID depends on sample size: "
                 "read it next to its *floor*, the FID between two real samples of the same sizes (a generator at "
                 "its floor is indistinguishable from real images at this N); its interval covers the expected FID "
                 "at these sizes. FD∞ (FID extrapolated to infinitely many images; needs 1.5 images per feature "
                 "dimension) compares models and classes of different sizes, and its interval covers the "
                 "population distance. KID: mean ± std over subsets, with a 95% interval of the mean. Precision / "
                 "recall / density / coverage (k nearest neighbours) with 95% intervals; every interval resamples "
                 "patients, not images (`ci_method` in each row). Detectability: the held-out AUROC of a linear "
                 "probe telling the synthetic images from the real ones in the same features (0.5: it cannot; 1: "
                 "always), fitted on half of the patients and tested on the other half, with its 95% interval.")
    columns = ["model", "features", "class", "n real / synthetic", "FID [95% CI]", "FID floor (real vs real)",
               "FD∞ [95% CI]", "KID [95% CI]", "precision [95% CI]", "recall [95% CI]", "density [95% CI]",
               "coverage [95% CI]", "detectability AUROC [95% CI]", "notes"]
    rows = []
    for i in f.frame.index:
        kid = f.num("kid_mean").iloc[i]
        kid_text = MISSING if not _finite(kid) else f"{kid:.4g}" + (
            f" ± {f.num('kid_std').iloc[i]:.2g}" if _finite(f.num("kid_std").iloc[i]) else "")
        if kid_text != MISSING and _finite(f.num("kid_ci_low").iloc[i]) and f.text("kid_subset_p025").iloc[i]:
            kid_text += f" [{f.num('kid_ci_low').iloc[i]:.4g}, {f.num('kid_ci_high').iloc[i]:.4g}]"
        rows.append([
            _label(f.text("model_name").iloc[i], f.text("extra_info").iloc[i]), f.text("feature_extractor").iloc[i],
            f.text("class").iloc[i],
            f"{_count(f.text('n_real').iloc[i])} / {_count(f.text('n_synthetic').iloc[i])}",
            _fmt_ci(f.num("fid").iloc[i], f.num("fid_ci_low").iloc[i], f.num("fid_ci_high").iloc[i], 2),
            _fmt_ci(f.num("fid_floor").iloc[i], f.num("fid_floor_ci_low").iloc[i],
                    f.num("fid_floor_ci_high").iloc[i], 2),
            _fmt_ci(f.num("fd_inf").iloc[i], f.num("fd_inf_ci_low").iloc[i], f.num("fd_inf_ci_high").iloc[i], 2),
            kid_text,
            *[_fmt_ci(f.num(m).iloc[i], f.num(f"{m}_ci_low").iloc[i], f.num(f"{m}_ci_high").iloc[i])
              for m in ("precision", "recall", "density", "coverage")],
            _fmt_ci(f.num("detect_auroc").iloc[i], f.num("detect_auroc_ci_low").iloc[i],
                    f.num("detect_auroc_ci_high").iloc[i], 2),
            f.text("notes").iloc[i]])
    section.add(Table(columns, rows))
    for i in f.frame.index[f.text("class") == "overall"]:
        line = detectability_line(*(f.num(c).iloc[i] for c in ("detect_auroc", "detect_auroc_ci_low",
                                                                 "detect_auroc_ci_high")))
        if line:
            section.note(f"{_label(f.text('model_name').iloc[i], f.text('extra_info').iloc[i])} "
                         f"({f.text('feature_extractor').iloc[i]}): {line}.")
    for extractor in dict.fromkeys(f.text("feature_extractor")):
        section.add(_quality_bars(f, extractor, figures))


# ------------------------------------------------------------------------------------------- memorisation


def _memorisation_section(section: Section, frame: _Frame, results: Path, figures: _Figures) -> None:
    if len(frame) == 0:
        section.not_run(f"Not run yet: the image-quality stage (`{STAGE_COMMANDS['image_quality_metrics']}`) runs "
                        "the memorisation check.")
        return
    f = frame
    overall = f.frame.index[f.text("class") == "overall"]
    if not len(overall):
        overall = f.frame.index
    runs = {}
    for i in overall:
        key = (f.text("model_name").iloc[i], f.text("extra_info").iloc[i], f.text("feature_extractor").iloc[i])
        runs.setdefault(key, i)
    columns = ["model", "features", "flagged synthetic [95% CI]", "in feature space", "in pixel space",
               "held-out real flagged (chance)", "n synthetic", "n train"]
    rows, shown = [], []
    for (model, extra, extractor), i in runs.items():
        if not _finite(f.num("memorised_share").iloc[i]):
            section.lack(f"memorisation of {_label(model, extra)} ({extractor}) did not run"
                         + (f": {f.text('notes').iloc[i]}" if f.text("notes").iloc[i] else ""))
            continue
        rows.append([_label(model, extra), extractor,
                     _fmt_ci(f.num("memorised_share").iloc[i], f.num("memorised_share_ci_low").iloc[i],
                             f.num("memorised_share_ci_high").iloc[i]),
                     _fmt(f.num("memorised_share_feature").iloc[i]), _fmt(f.num("memorised_share_pixel").iloc[i]),
                     _fmt(f.num("memorised_share_real").iloc[i]), _count(f.text("memorisation_n_synthetic").iloc[i]),
                     _count(f.text("memorisation_n_train").iloc[i])])
        shown.append(((model, extra, extractor), i))
    if not rows:
        section.status = "missing"
        return
    section.note("Every synthetic image against its nearest real *training* image in feature space (cosine) and in "
                 "pixel space (RMSE, tolerant to a flip and small shifts); flagged when closer than 99.9% of real "
                 "pairs of different patients. Held-out real images flagged the same way give the chance level.")
    section.add(Table(columns, rows))
    for (model, extra, extractor), i in shown:
        candidates = [Path(d) / "memorisation_closest.png" for d in (f.text("report_dir").iloc[i],) if d]
        folder = _run_folder(results, f.text("run_id").iloc[i])
        if folder is not None:
            candidates.append(folder / "memorisation_closest.png")
        png = next((p for p in candidates if p.is_file()), None)
        if png is None:
            section.lack(f"closest pairs of {_label(model, extra)} ({extractor}): `memorisation_closest.png` is "
                         f"missing (run `{f.text('run_id').iloc[i] or MISSING}`)")
            continue
        path = figures.copy(png, f"memorisation_{_label(model, extra)}_{extractor}")
        section.add(Figure(path, f"Closest synthetic / training pairs of {_label(model, extra)} ({extractor} "
                                 "features and pixels)", collapse=True))


# ------------------------------------------------------------------------------- re-identification, alignment


def _privacy_tables(section: Section, frame: _Frame, results: Path, figures: _Figures) -> None:
    """Re-identification rows beside memorisation (a note with the command when the stage has not run)."""
    if len(frame) == 0:
        section.not_run(f"Patient re-identification has no rows yet: `{STAGE_COMMANDS['privacy_metrics']}` writes "
                        "`privacy_metrics.csv`.")
        return
    f = frame
    section.note("Patient re-identification. *Screen*: a Siamese same-patient model scores every synthetic image "
                 "against its nearest real *training* image; the threshold keeps the false-match rate on real pairs "
                 "of different patients, and held-out real test images scored the same way give a chance level. "
                 "*Prompt-matched* (CheXGenBench's design): each synthetic image made from a training row against "
                 "its own source image, tested against the same image scored against another training patient "
                 "(the null; one-sided paired test over source patients). The model's own verification AUROC on val "
                 "patients says whether it works at all. Intervals resample source patients and the calibration "
                 "patients that set the threshold; the maximum has no interval (a bootstrap of an extreme is "
                 "inconsistent).")
    columns = ["model", "re-id model", "class", "re-id AUROC (val) [95% CI]", "screen: mean [95% CI]", "screen: max",
               "screen: above threshold [95% CI]", "held-out real above (chance) [95% CI]",
               "matched: mean / max / count above", "matched vs null above [95% CI]", "p (matched > null)", "FMR",
               "n synthetic / train", "notes"]
    rows = []
    for i in f.frame.index:
        def ci(name: str, digits: int = 3, i: int = i) -> str:
            return _fmt_ci(f.num(name).iloc[i], f.num(f"{name}_ci_low").iloc[i], f.num(f"{name}_ci_high").iloc[i],
                           digits)

        matched = MISSING
        if _finite(f.num("matched_reid_mean").iloc[i]):
            matched = (f"{_fmt(f.num('matched_reid_mean').iloc[i])} / {_fmt(f.num('matched_reid_max').iloc[i])} / "
                       f"{_count(f.text('matched_reid_count_above').iloc[i])} of "
                       f"{_count(f.text('matched_n_synthetic').iloc[i])}")
        versus = MISSING
        if _finite(f.num("matched_reid_share_above").iloc[i]):
            versus = (f"{ci('matched_reid_share_above')} vs {ci('matched_null_reid_share_above')}; "
                      f"difference {ci('matched_share_difference')}")
        rows.append([_label(f.text("model_name").iloc[i], f.text("extra_info").iloc[i]),
                     Path(f.text("reid_model").iloc[i]).name or MISSING, f.text("class").iloc[i],
                     ci("reid_val_auroc"), ci("reid_mean"), _fmt(f.num("reid_max").iloc[i]), ci("reid_share_above"),
                     ci("real_reid_share_above"), matched, versus, _fmt_p(f.num("matched_p_value").iloc[i]),
                     _fmt(f.num("reid_fmr").iloc[i]),
                     f"{_count(f.text('reid_n_synthetic').iloc[i])} / {_count(f.text('reid_n_train').iloc[i])}",
                     f.text("notes").iloc[i]])
    section.add(Table(columns, rows))
    for i in f.frame.index[f.text("class") == "overall"]:
        label = _label(f.text("model_name").iloc[i], f.text("extra_info").iloc[i])
        candidates = [Path(d) / "reid_closest.png" for d in (f.text("report_dir").iloc[i],) if d]
        folder = _run_folder(results, f.text("run_id").iloc[i])
        if folder is not None:
            candidates.append(folder / "reid_closest.png")
        png = next((p for p in candidates if p.is_file()), None)
        if png is None:
            section.lack(f"re-identified pairs of {label}: `reid_closest.png` is missing "
                         f"(run `{f.text('run_id').iloc[i] or MISSING}`)")
            continue
        section.add(Figure(figures.copy(png, f"reid_{label}"), f"Most re-identifiable synthetic images of {label} "
                                                                "and their nearest training image", collapse=True))


def _alignment_table(section: Section, frame: _Frame) -> None:
    """Text-image alignment per class (a note with the command when the stage has not run)."""
    if len(frame) == 0:
        section.note(f"Text-image alignment has no rows yet: `{STAGE_COMMANDS['alignment_metrics']}` writes "
                     "`alignment_metrics.csv`.")
        return
    f = frame
    section.note("Text-image alignment: cosine of image and prompt embeddings in a vision-language model, per class; "
                 "shuffled prompts (each image with another image's prompt) are the chance level, the real test "
                 "images on their own prompts the reference. Bootstrap 95% CIs over images.")
    columns = ["model", "alignment model", "class", "n synthetic / real", "synthetic [95% CI]",
               "synthetic, shuffled prompts", "gain over shuffled [95% CI]", "real test [95% CI]",
               "real gain over shuffled [95% CI]"]
    rows = []
    for i in f.frame.index:
        def ci(name: str, i: int = i) -> str:
            return _fmt_ci(f.num(name).iloc[i], f.num(f"{name}_ci_low").iloc[i], f.num(f"{name}_ci_high").iloc[i])

        rows.append([_label(f.text("model_name").iloc[i], f.text("extra_info").iloc[i]),
                     Path(f.text("alignment_model").iloc[i]).name or MISSING, f.text("class").iloc[i],
                     f"{_count(f.text('alignment_n').iloc[i])} / {_count(f.text('real_alignment_n').iloc[i])}",
                     ci("alignment_mean"), ci("alignment_shuffled_mean"), ci("alignment_gain"),
                     ci("real_alignment_mean"), ci("real_alignment_gain")])
    section.add(Table(columns, rows))


def _subgroup_table(section: Section, frame: _Frame) -> None:
    """The pretrained stage's subgroup rows (``--by``): nothing when the stage ran without subgroups."""
    if len(frame) == 0:
        return
    f = frame
    section.note("Subgroups (`--by`): per subgroup AUROC and false-negative rate (FNR: positives missed at the "
                 "stage's threshold) with 95% intervals, and each subgroup's gap to the subgroup with the most "
                 "positives (FNR gap > 0: this subgroup's findings are missed more often; MOVER intervals). A "
                 "subgroup with fewer than 5 positives shows its figures without intervals.")
    columns = ["model", "classifier", "images", "class", "subgroup", "n (positives)", "AUROC [95% CI]",
               "FNR [95% CI]", "vs", "FNR gap [95% CI]", "AUROC gap [95% CI]", "note"]
    rows = []
    for i in f.frame.index:
        def ci(name: str, i: int = i) -> str:
            return _fmt_ci(f.num(name).iloc[i], f.num(f"{name}_ci_low").iloc[i], f.num(f"{name}_ci_high").iloc[i])

        rows.append([_label(f.text("model_name").iloc[i], f.text("extra_info").iloc[i]), f.text("classifier").iloc[i],
                     f.text("image_source").iloc[i], f.text("class").iloc[i],
                     f"{f.text('subgroup_by').iloc[i]}={f.text('subgroup').iloc[i]}",
                     f"{_count(f.text('n').iloc[i])} ({_count(f.text('n_positive').iloc[i])})", ci("auroc"),
                     ci("fnr"), f.text("gap_reference").iloc[i] or "(reference)", ci("fnr_gap"), ci("auroc_gap"),
                     f.text("subgroup_note").iloc[i]])
    section.add(Table(columns, rows))
