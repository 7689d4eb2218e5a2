"""Config: defaults match the original design, overrides parse, bad values stop with one clear
line."""
import pytest

import configs
from configs import ConfigError, parse_args


def test_defaults_match_the_spec():
    cfg = configs.Config()
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.disc_lr, cfg.weight_decay) == \
        (35, 256, 1e-3, 1e-4, 1e-5)
    assert (cfg.latent_dim, cfg.core_dim, cfg.detail_dim) == (128, 16, 112)
    assert (cfg.calibration_batches, cfg.tighten_start_epoch, cfg.tighten_rate) == (200, 5, 0.05)
    assert cfg.min_lr == 1e-5 and cfg.output_dir == "outputs_bom_v15"


def test_overrides_in_both_forms_and_presets_apply_first():
    cfg = parse_args(["--batch_size=64", "--preset", "demo", "--epochs", "3",
                      "--enc_channels", "8,16,32,64", "--amp", "false"])
    assert (cfg.batch_size, cfg.epochs, cfg.amp) == (64, 3, False)
    assert cfg.enc_channels == (8, 16, 32, 64)
    assert cfg.dataset == "synthetic"  # from the preset


def test_the_demo_runs_the_split_and_the_study_the_defaults():
    """The demo shows the best split found, with its clipped LBO step; the study's variants
    start from the default decoder, consistency goals and unclipped step, or its kept runs and
    their names would change meaning."""
    spec, demo, study = (configs.Config(), parse_args(["--preset", "demo"]),
                         parse_args(["--preset", "study"]))
    assert (demo.consistency, demo.decoder, demo.lbo_grad_clip) == ("split", "asymmetric", 5)
    assert (study.consistency, study.decoder, study.lbo_grad_clip) == \
        (spec.consistency, spec.decoder, spec.lbo_grad_clip) == ("core", "standard", 0)
    assert (study.tighten_start_epoch, study.tighten_rate) == \
        (spec.tighten_start_epoch, spec.tighten_rate)


@pytest.mark.parametrize("argv,expected", [
    (["--lr", "-1"], "lr = -1.0: must be > 0"),
    (["--core_dim", "128"], "core_dim = 128: must be < latent_dim (128)"),
    (["--epoch", "3"], "unknown setting --epoch; did you mean 'epochs'?"),
    (["--batch_size", "big"], "--batch_size: cannot read 'big' as int"),
    (["--amp", "maybe"], "--amp: cannot read 'maybe' as bool"),
    (["--dataset", "celeb"], "dataset = 'celeb': allowed values are auto, celeba, folder, "
                             "synthetic, synthetic_sparse, shapes3d, mpi3d, dsprites; "
                             "did you mean 'celeba'?"),
    (["--image_size", "72"], "image_size = 72: must be a multiple of 16"),
    (["--preset", "dmeo"], "unknown preset 'dmeo'; did you mean 'demo'?"),
    (["--enc_channels", "8,16"], "enc_channels = (8, 16): must be four positive channel counts"),
    (["--tighten_rate", "1.5"], "tighten_rate = 1.5: must be strictly between 0 and 1"),
    (["--epochs"], "--epochs needs a value"),
    (["epochs=3"], "unexpected argument 'epochs=3'"),
])
def test_bad_values_name_the_field_the_value_and_what_is_allowed(argv, expected):
    with pytest.raises(ConfigError) as err:
        parse_args(argv)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("edit,expected", [
    (dict(type="MINIMISE_SOFT"), "type 'MINIMISE_SOFT' unknown; types are"),
    (dict(scale=-1.0), "scale must be > 0"),
    (dict(scale="big"), "needs a numeric 'scale' (or 'auto')"),
    (dict(group="recons"), "group 'recons' unknown"),
])
def test_bad_goal_entries_are_refused(edit, expected):
    cfg = configs.Config()
    cfg.goals[0].update(edit)
    with pytest.raises(ConfigError) as err:
        configs.validate(cfg)
    assert "goal 'pixel'" in str(err.value) and expected in str(err.value)


def test_box_bounds_must_be_ordered():
    cfg = configs.Config()
    box = next(g for g in cfg.goals if g["type"] == "BOX")
    box["lower"], box["upper"] = 5.0, 1.0
    with pytest.raises(ConfigError, match="lower .* must be < upper"):
        configs.validate(cfg)


def test_a_cosine_floor_above_either_rate_is_refused_and_a_constant_schedule_has_none():
    # The floor is both optimizers': above disc_lr (1e-4) the discriminator's rate would climb.
    with pytest.raises(ConfigError, match=r"min_lr = 0.0002: must be <= disc_lr \(0.0001\).*"
                       "--lr_schedule constant"):
        parse_args(["--min_lr", "2e-4"])
    with pytest.raises(ConfigError, match=r"min_lr = 0.002: must be <= lr \(0.001\)"):
        parse_args(["--min_lr", "2e-3"])
    assert parse_args(["--min_lr", "2e-4", "--lr_schedule", "constant"]).lr_schedule == \
        "constant"


def test_config_round_trips_through_plain_data():
    cfg = parse_args(["--preset", "tiny"])
    data = configs.to_dict(cfg)
    assert isinstance(data["enc_channels"], list)
    assert configs.from_dict(data) == cfg


def test_an_older_checkpoints_settings_load_in_todays_names():
    """A run made before the research switches were retired holds them at their old defaults,
    and the old name "spec" for the default decoder and consistency goals: it loads as today's
    defaults. One made with a retired switch on is refused in one line naming the switch."""
    old = configs.to_dict(parse_args(["--preset", "tiny"]))
    old.update(configs.RETIRED_SETTINGS, decoder="spec", consistency="spec")
    assert configs.from_dict(old) == parse_args(["--preset", "tiny"])
    with pytest.raises(ConfigError, match=r"^this run was made with cycle_goals = True, a "
                       r"switch retired since \(lab/README.md, Retired switches\); use "
                       r"commit \w+ to resume or load it$"):
        configs.from_dict({**old, "cycle_goals": True})


@pytest.mark.parametrize("retired", ["--jitter_scale", "--pixel_emphasis", "--decode_batchnorm"])
def test_a_retired_switch_says_so_and_where_it_still_is(retired):
    with pytest.raises(ConfigError, match=f"^{retired} was a research switch, retired since "
                       r"\(lab/README.md\); commit \w+ still has it$"):
        parse_args([retired, "1"])


def test_train_main_prints_one_line_and_exits_2(capsys):
    import train
    assert train.main(["--lr", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: lr = 0.0: must be > 0"


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_every_setting_with_its_default_and_meaning_and_exits_0(flag, capsys):
    import dataclasses
    import train
    assert train.main(["--preset", "demo", flag]) == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: python train.py [--preset NAME]")
    defaults = configs.Config()
    for f in dataclasses.fields(configs.Config):
        if f.name == "goals":
            assert "goals: the goal table" in text
            continue
        line = next((ln for ln in text.splitlines() if ln.startswith(f"  --{f.name} ")), None)
        assert line is not None, f.name
        value = getattr(defaults, f.name)
        shown = ",".join(map(str, value)) if isinstance(value, tuple) else \
            str(value).lower() if isinstance(value, bool) else '""' if value == "" else str(value)
        assert f"(default {shown}" in line, line
    # A meaning is the comment beside the field in configs.py, the one docs/settings.md shows.
    assert "side of the square images, in pixels (a multiple of 16)" in text
    for preset in configs.PRESETS:
        assert f"  {preset}: dataset=" in text
    assert "one of " + ", ".join(configs.CHOICES["objective"]) in text


def test_help_is_not_a_setting_and_settings_still_parse_around_it():
    with pytest.raises(configs.HelpRequested):
        parse_args(["--epochs", "3", "--help"])
    with pytest.raises(ConfigError, match="--epochs needs a value"):
        parse_args(["--epochs"])
