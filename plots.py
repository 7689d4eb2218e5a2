"""The pictures of a BOM VAE v15 run.

Every `save_*` function writes one PNG at `path` (creating its folder) and returns the path
as a `pathlib.Path`. Image tensors are float in [0, 1], shape (N, 3, H, W).
`history` is the list of per-epoch records of metrics.jsonl; a missing or NaN value leaves a
gap in its line instead of failing, and every line carries markers so that a single epoch, or
an epoch between two gaps, still shows.
"""
from pathlib import Path

import numpy as np
# Figures are built without pyplot: nothing global changes (a notebook that imports this
# module keeps its own backend) and no window is ever opened; savefig renders with Agg.
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from configs import ACTIVE_VARIANCE

DPI = 120
DETAIL_GAIN = 5.0  # the detail contribution is amplified so that small differences show
IMAGE_INCHES = 0.9  # drawn size of one image in a grid
IMAGE_GAP = 2  # white pixels between neighbouring images of a grid
MIN_GRID_INCHES = 7.0  # narrowest image-grid figure

# One colour per goal group, the same in every figure.
GROUP_COLOURS = {
    "recon": "tab:blue",
    "core": "tab:orange",
    "swap": "tab:green",
    "realism": "tab:red",
    "disentangle": "tab:purple",
    "latent": "tab:brown",
    "health": "tab:pink",
}
UNKNOWN_GROUP_COLOUR = "tab:gray"
CORE_COLOUR, DETAIL_COLOUR = "tab:orange", "tab:cyan"  # the two halves of the latent

# Tightener decisions marked on the rollback-rate plot (a decision starts with its kind).
DECISION_STYLES = {
    "tighten": {"marker": "v", "color": "tab:blue", "s": 40},
    "backoff": {"marker": "X", "color": "tab:red", "s": 90},
    "hold": {"marker": "s", "color": "tab:orange", "s": 70},
    "stop": {"marker": "*", "color": "black", "s": 160},
}
TIGHTEN = "tighten"  # frequent, so marked without a text label


# ----------------------------------------------------------------------------- images

def detail_contribution(recon, recon_core):
    """What the detail dims add to a reconstruction, amplified ×5 around mid-grey:
    0.5 + 5·(recon − recon_core), clipped to [0, 1]. Works on tensors and numpy arrays."""
    return (0.5 + DETAIL_GAIN * (recon - recon_core)).clip(0.0, 1.0)


def _as_images(name, images):
    """A (N, 3, H, W) tensor or array as a float numpy array ready to draw."""
    if hasattr(images, "detach"):
        images = images.detach().cpu().float().numpy()
    array = np.asarray(images, dtype=np.float32)
    if array.ndim != 4 or array.shape[1] != 3:
        raise ValueError(f"{name}: expected images of shape (N, 3, H, W), "
                         f"got {tuple(array.shape)}")
    # A decoder in bf16 can overshoot [0, 1] by a rounding step, and a diverged one can give
    # NaN; draw those as the nearest valid colour (NaN as black) rather than fail at the end.
    return np.clip(np.nan_to_num(array), 0.0, 1.0)


def _first_images(n, **batches):
    """The first n images of each named batch, checked to have one shape."""
    arrays = {name: _as_images(name, batch)[:n] for name, batch in batches.items()}
    shapes = {name: array.shape for name, array in arrays.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(f"image batches must match in shape (first {n} images taken): {listed}")
    return list(arrays.values())


def _mosaic(rows):
    """Rows of (N, 3, H, W) arrays as one (H', W', 3) image, images separated by white gaps."""
    n_cols, _, height, width = rows[0].shape
    step_y, step_x = height + IMAGE_GAP, width + IMAGE_GAP
    mosaic = np.ones((len(rows) * step_y - IMAGE_GAP, n_cols * step_x - IMAGE_GAP, 3),
                     dtype=np.float32)
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            mosaic[i * step_y:i * step_y + height,
                   j * step_x:j * step_x + width] = image.transpose(1, 2, 0)
    return mosaic


def _save_image_grid(path, title, labelled_rows, column_labels=None, column_title=None):
    """One picture of image rows, each row named on the left; optional labels per column.

    labelled_rows: [(row label, (N, 3, H, W) array)], all of one shape.
    """
    rows = [images for _, images in labelled_rows]
    n_cols, _, height, width = rows[0].shape
    if n_cols == 0:
        raise ValueError(f"{title}: no images to draw")
    # Wide enough for the title and row labels even with few columns.
    fig = Figure(figsize=(max(n_cols * IMAGE_INCHES + 2.2, MIN_GRID_INCHES),
                          len(rows) * IMAGE_INCHES + 1.2), layout="constrained")
    ax = fig.subplots()
    # One image with tick labels at the cell centres is much faster than an axes per cell
    # and keeps the labels aligned with the images.
    ax.imshow(_mosaic(rows), interpolation="nearest")
    ax.set_yticks([i * (height + IMAGE_GAP) + (height - 1) / 2 for i in range(len(rows))],
                  [label for label, _ in labelled_rows])
    column_centres = [j * (width + IMAGE_GAP) + (width - 1) / 2 for j in range(n_cols)]
    if column_labels is None:
        ax.set_xticks([])
    else:
        ax.set_xticks(column_centres, column_labels)
        ax.xaxis.tick_top()
        ax.xaxis.set_label_position("top")
        ax.set_xlabel(column_title)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.suptitle(title, fontsize=13, wrap=True)
    return _save(fig, path)


def save_reconstructions(path, x, recon, recon_core, n=8):
    """Rows: original, full reconstruction, core-only reconstruction (detail zeroed), and the
    detail contribution ×5 (`detail_contribution`); the first n images as columns."""
    original, full, core = _first_images(n, x=x, recon=recon, recon_core=recon_core)
    rows = [
        ("original", original),
        ("full\nreconstruction", full),
        ("core only\n(detail = 0)", core),
        ("detail ×5\n0.5 + 5·(full − core)", detail_contribution(full, core)),
    ]
    return _save_image_grid(path, "Reconstructions: what core (structure) and detail "
                                  "(appearance) each carry", rows)


def _step_label(value):
    # linspace(-3, 3, 11) gives ~1e-16 for its middle step, which would print as "-0.0".
    return "0 (μ)" if abs(value) < 0.05 else f"{value:+.1f}"


def save_traversals(path, grid, dims, values, title):
    """grid: (len(dims), len(values), 3, H, W) decoded images. One row per latent dim
    ('dim k'), one column per step value added to that dim of μ."""
    images = grid.detach().cpu().float().numpy() if hasattr(grid, "detach") else np.asarray(grid)
    dims, values = [int(d) for d in dims], [float(v) for v in values]
    if images.ndim != 5 or images.shape[:2] != (len(dims), len(values)):
        raise ValueError(f"traversal grid has shape {tuple(images.shape)}, expected "
                         f"(len(dims), len(values), 3, H, W) = "
                         f"({len(dims)}, {len(values)}, 3, H, W)")
    rows = [(f"dim {d}", _as_images(f"traversal of dim {d}", row)) for d, row in zip(dims, images)]
    return _save_image_grid(path, title, rows, [_step_label(v) for v in values],
                            "step added to the dim's value of μ")


def save_cross_reconstruction(path, x1, x2, cross, n=8):
    """Rows: x1 (structure source), x2 (appearance source), decode(core of x1, detail of x2)."""
    structure, appearance, mixed = _first_images(n, x1=x1, x2=x2, cross=cross)
    rows = [
        ("x1\n(structure)", structure),
        ("x2\n(appearance)", appearance),
        ("decode(core x1,\ndetail x2)", mixed),
    ]
    return _save_image_grid(path, "Cross reconstruction: structure of x1 with appearance of x2",
                            rows)


def save_prior_samples(path, samples, per_row=8):
    """Decodes of z ~ N(0, I): what the model generates from the prior."""
    images = _as_images("samples", samples)
    rows = [(f"z ~ N(0, I)\n#{i // per_row + 1}", images[i:i + per_row])
            for i in range(0, len(images) - per_row + 1, per_row)]
    if not rows:
        raise ValueError(f"samples: need at least {per_row} images, got {len(images)}")
    return _save_image_grid(path, "Samples from the prior", rows)


def save_dim_effects(path, effects, core_dim):
    """Heat map, one column per latent dim: how much traversing it changes structure (edges)
    and appearance (colour), each relative to the change between two arbitrary images."""
    effects = np.asarray(effects, dtype=np.float64)
    if effects.ndim != 2 or effects.shape[1] != 2:
        raise ValueError(f"effects: expected shape (dims, 2), got {effects.shape}")
    dims = effects.shape[0]
    fig = Figure(figsize=(max(8.0, 0.16 * dims + 3.0), 3.2), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(effects.T, aspect="auto", cmap="magma", interpolation="nearest")
    ax.set_yticks([0, 1], ["structure\n(edges)", "appearance\n(colour)"])
    ax.axvline(core_dim - 0.5, color="cyan", linewidth=2)
    ax.set_xlabel(f"latent dim (0-{core_dim - 1}: core | {core_dim}-{dims - 1}: detail)")
    ax.set_title("What each latent dim controls (traversal effect / change between two "
                 "arbitrary images)")
    fig.colorbar(image, ax=ax, label="relative effect")
    return _save(fig, path)


# ----------------------------------------------------------------------------- history

def _epochs(history):
    if not history:
        raise ValueError("history is empty: no epoch to plot")
    return np.array([record["epoch"] for record in history])


def _series(history, *keys):
    """One float per epoch from record[keys[0]][keys[1]]...; missing or None gives NaN."""
    values = []
    for record in history:
        value = record
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        values.append(np.nan if value is None else float(value))
    return np.array(values, dtype=float)


def _group_colour(group):
    return GROUP_COLOURS.get(group, UNKNOWN_GROUP_COLOUR)


def _plot_epoch_line(ax, epochs, values, **style):
    # Markers keep single epochs and points between NaN gaps visible.
    ax.plot(epochs, values, **{"marker": "o", "markersize": 4, **style})


def _format_epoch_axis(ax):
    ax.set_xlabel("epoch")
    # min_n_ticks=1: a single epoch gets one tick, not fractional epochs around it.
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.grid(alpha=0.3)


def _legend_outside(ax, **options):
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, **options)


def save_group_balance(path, history, groups):
    """Each group's mean score per epoch, one line per group, and the min group (thick black)."""
    epochs = _epochs(history)
    fig = Figure(figsize=(10, 5), layout="constrained")
    ax = fig.subplots()
    for group in groups:
        _plot_epoch_line(ax, epochs, _series(history, "groups", group),
                         color=_group_colour(group), label=group)
    _plot_epoch_line(ax, epochs, _series(history, "min_group"), color="black", linewidth=3.5,
                     markersize=6, label="min group\n(mean of per-batch min)")
    ax.set_ylim(0.0, 1.1)
    ax.set_ylabel("score (mean over the epoch's batches)")
    ax.set_title("Group balance: the loss is −log(min group); every group should rise toward 1")
    _format_epoch_axis(ax)
    _legend_outside(ax, title="group")
    return _save(fig, path)


def _plot_panel(ax, epochs, history, title, ylabel, colours, **style):
    """Lines for the named history keys ({key: colour}) on one panel."""
    for key, colour in colours.items():
        _plot_epoch_line(ax, epochs, _series(history, key), color=colour, label=key, **style)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    _format_epoch_axis(ax)


def save_training_history(path, history):
    """Panels per epoch: loss, min group, SSIM and MSE (training and held-out); swap losses,
    latent variances, summed KL, KL per dim with its ceiling."""
    epochs = _epochs(history)
    fig = Figure(figsize=(20, 9), layout="constrained")
    axes = fig.subplots(2, 4)
    (loss_ax, min_ax, ssim_ax, mse_ax), (swap_ax, variance_ax, kl_ax, kl_dim_ax) = axes

    _plot_panel(loss_ax, epochs, history, "Loss (lower is better)", "−log(min group)",
                {"loss": "black"})
    _plot_panel(min_ax, epochs, history, "Min group (rises toward 1)", "score",
                {"min_group": "black"}, linewidth=2.5)
    min_ax.set_ylim(0.0, 1.1)
    # Held-out (eval mode, decode(mu)) beside training: convergence, and any gap between
    # what training measures and what evaluation sees.
    _plot_panel(ssim_ax, epochs, history, "SSIM (higher is better)", "SSIM",
                {"ssim": "tab:blue", "heldout_ssim": "tab:orange"})
    _plot_panel(mse_ax, epochs, history, "MSE (lower is better)", "MSE",
                {"mse": "tab:blue", "heldout_mse": "tab:orange"})
    for ax in (ssim_ax, mse_ax):
        ax.legend(loc="best")

    _plot_panel(swap_ax, epochs, history, "Swap losses (lower is better)", "MSE",
                {"swap_structure": "tab:green", "swap_appearance": "tab:olive"})
    _plot_panel(variance_ax, epochs, history, "Latent variances",
                "median batch variance of μ over dims",
                {"core_var": CORE_COLOUR, "detail_var": DETAIL_COLOUR})
    variance_ax.axhline(ACTIVE_VARIANCE, color="gray", linestyle=":",
                        label=f"active threshold {ACTIVE_VARIANCE:g}")
    _plot_panel(kl_ax, epochs, history, "KL, summed over dims", "KL (nats)",
                {"kl_core": CORE_COLOUR, "kl_detail": DETAIL_COLOUR})
    _plot_panel(kl_dim_ax, epochs, history, "KL per latent dim", "mean KL per dim (nats)",
                {"kl_core_dim": CORE_COLOUR, "kl_detail_dim": DETAIL_COLOUR})
    ceilings = {goal["upper"] for goal in history[-1].get("kl_goals", {}).values()
                if goal.get("upper") is not None} if history else set()
    for ceiling in sorted(ceilings):
        kl_dim_ax.axhline(ceiling, color="tab:green", linestyle="--",
                          label=f"goal ceiling {ceiling:g} (last epoch)")
    # Logarithmic: a collapsed encoder sits decades below the active threshold, and a KL
    # blow-up (thousands per dim) would otherwise flatten the band.
    for ax in (variance_ax, kl_ax, kl_dim_ax):
        ax.set_yscale("log")
    for ax in (swap_ax, variance_ax, kl_ax, kl_dim_ax):
        ax.legend(loc="best")
    fig.suptitle("Training history", fontsize=14)
    return _save(fig, path)


def save_bottleneck_shares(path, history, groups):
    """Stacked bars per epoch: the share of the epoch's steps in which each group was the
    bottleneck (the only group that gets gradient), so a starved group shows at a glance."""
    epochs = _epochs(history)
    steps = np.nan_to_num(_series(history, "steps"))
    fig = Figure(figsize=(max(10.0, 0.3 * len(epochs) + 4.0), 5), layout="constrained")
    ax = fig.subplots()
    stacked = np.zeros(len(epochs))
    for group in groups:
        share = 100 * np.nan_to_num(_series(history, "bottleneck", group))
        # Over the whole run, weighted by each epoch's number of steps.
        overall = f" ({(share * steps).sum() / steps.sum():.1f} % overall)" if steps.sum() else ""
        ax.bar(epochs, share, bottom=stacked, width=0.8, color=_group_colour(group),
               label=group + overall)
        stacked += share
    for epoch in epochs[stacked == 0]:
        ax.text(epoch, 50, "no LBO step", rotation=90, ha="center", va="center", color="gray")
    ax.set_ylim(0, 100)
    ax.set_ylabel("share of the epoch's steps (%)")
    ax.set_title("Bottleneck group per epoch (only the bottleneck gets gradient)")
    _format_epoch_axis(ax)
    ax.grid(False)
    _legend_outside(ax, title="bottleneck group")
    return _save(fig, path)


def decision_kind(decision):
    """'tighten', 'backoff', 'hold' or 'stop' when the tightener's decision starts with it,
    else None (e.g. 'warm-up')."""
    text = (decision or "").strip().lower()
    return next((kind for kind in DECISION_STYLES if text.startswith(kind)), None)


def save_rollback_rate(path, history, target):
    """Refused steps per epoch in percent (`rollback_rate` and `target` are fractions), the
    target as a dashed line, and the tightener's decisions marked."""
    epochs = _epochs(history)
    rate = 100 * _series(history, "rollback_rate")
    target_percent = 100 * float(target)
    fig = Figure(figsize=(10, 5), layout="constrained")
    ax = fig.subplots()
    _plot_epoch_line(ax, epochs, rate, color="tab:red", label="refused (rolled back + rejected)")
    ax.axhline(target_percent, color="black", linestyle="--",
               label=f"target {target_percent:g} %")
    kinds = np.array([decision_kind(record.get("decision")) for record in history])
    for kind, style in DECISION_STYLES.items():
        marked = kinds == kind
        if not marked.any():
            continue
        # A decision in an epoch without a measured rate is still shown, at 0.
        heights = np.nan_to_num(rate[marked])
        ax.scatter(epochs[marked], heights, zorder=3, label=kind, **style)
        if kind != TIGHTEN:
            for epoch, height in zip(epochs[marked], heights):
                ax.annotate(kind, (epoch, height), textcoords="offset points", xytext=(0, 10),
                            ha="center", fontsize=10, color=style["color"])
    highest = np.nanmax(np.append(rate, target_percent))
    ax.set_ylim(0, max(1.0, 1.25 * highest))  # room above the highest point for its label
    ax.set_ylabel("refused steps (% of the epoch's steps)")
    ax.set_title("Rollback rate: goals tighten until the target is reached, then training stops")
    _format_epoch_axis(ax)
    _legend_outside(ax, title="rate and decisions")
    return _save(fig, path)


# ----------------------------------------------------------------------------- files

def _save(fig, path):
    """Write the figure as a PNG, creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png")
    return path


def save_study(path, table, headline, interval, columns=3):
    """One panel per headline metric: each variant's seeds as points, and the mean with its
    95 % interval (interval(values) -> (mean, half-width, n)) as a bar."""
    variants = list(table)
    rows = -(-len(headline) // columns)
    fig = Figure(figsize=(5.0 * columns, rows * (0.32 * len(variants) + 1.6)),
                 layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat[len(headline):]:
        ax.set_visible(False)
    for ax, (metric, better) in zip(axes.flat, headline.items()):
        for row, variant in enumerate(variants):
            values = [v for v in table[variant]["metrics"].get(metric, [])
                      if v is not None and np.isfinite(v)]
            if not values:
                continue
            ax.scatter(values, [row] * len(values), s=18, color="tab:blue", alpha=0.6,
                       zorder=3)
            mean, half, _ = interval(values)
            ax.errorbar(mean, row, xerr=half if np.isfinite(half) else None, fmt="|",
                        color="black", markersize=14, capsize=4, zorder=4)
        ax.set_title(f"{metric} ({better} is better)")
        ax.set_yticks(range(len(variants)), variants if ax in axes[:, 0] else [])
        ax.set_ylim(len(variants) - 0.5, -0.5)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Study: one point per seed; bar = mean and 95 % interval", fontsize=13)
    return _save(fig, path)


# ----------------------------------------------------------------------------- probes

KIND_COLOURS = {"structure": CORE_COLOUR, "appearance": DETAIL_COLOUR, "mixed": "tab:gray"}


def save_part_heatmap(path, title, panels):
    """Heat map of probe scores, one row per factor (its kind marked in its label, coloured
    as the part that should carry it) and one column per part of the latent (core, detail, ...).

    panels: list of dicts with "title", "rows" (factor labels), "kinds" ("structure",
    "appearance" or "mixed" per row), "columns" (part names), "values" ((rows, columns)
    scores; NaN drawn grey and written n/a), "vmin", "vmax" (the colour scale; values beyond
    are drawn at its ends but written as they are) and "label" (what the score is).
    """
    if not panels:
        raise ValueError("panels: need at least one panel")
    heights = []
    for panel in panels:
        values = np.asarray(panel["values"], dtype=np.float64)
        if values.shape != (len(panel["rows"]), len(panel["columns"])) or \
                len(panel["kinds"]) != len(panel["rows"]):
            raise ValueError(f"panel {panel['title']!r}: values {values.shape} do not match "
                             f"{len(panel['rows'])} rows ({len(panel['kinds'])} kinds) x "
                             f"{len(panel['columns'])} columns")
        heights.append(max(1.5, 0.28 * len(panel["rows"]) + 1.0))
    fig = Figure(figsize=(6.4, sum(heights) + 0.6), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False, height_ratios=heights)[:, 0]
    cmap = colormaps["viridis"].with_extremes(bad="lightgray")
    for ax, panel in zip(axes, panels):
        values = np.asarray(panel["values"], dtype=np.float64)
        image = ax.imshow(np.ma.masked_invalid(values), aspect="auto", cmap=cmap,
                          vmin=panel["vmin"], vmax=panel["vmax"], interpolation="nearest")
        for (r, c), value in np.ndenumerate(values):
            shade = (value - panel["vmin"]) / (panel["vmax"] - panel["vmin"]) \
                if np.isfinite(value) else 1.0
            ax.text(c, r, f"{value:.2f}" if np.isfinite(value) else "n/a", ha="center",
                    va="center", fontsize=8, color="black" if shade > 0.55 else "white")
        labels = [f"{name}  [{kind[0].upper()}]" for name, kind in
                  zip(panel["rows"], panel["kinds"])]
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        for tick, kind in zip(ax.get_yticklabels(), panel["kinds"]):
            tick.set_color(KIND_COLOURS.get(kind, UNKNOWN_GROUP_COLOUR))
        ax.set_xticks(range(len(panel["columns"])), panel["columns"])
        ax.xaxis.tick_top()
        ax.set_title(panel["title"], fontsize=10, pad=4)
        ax.set_xlabel("")
        fig.colorbar(image, ax=ax, label=panel["label"], shrink=0.9)
    fig.suptitle(f"{title}\n[S] structure (should be high from core), [A] appearance "
                 "(should be high from detail), [M] mixed", fontsize=9)
    return _save(fig, path)
