"""delving.training.estimate: the projection's arithmetic and its lines, and
the one line a real tiny run prints."""

import types

import pytest

from delving.training import estimate
from tests import train_testutil

CFG = types.SimpleNamespace(epochs=80, steps_per_epoch=10_000, preset="imagenet", builtin_data=True)


def test_project_is_epochs_times_steps_times_step_time():
    projection = estimate.project(epochs=80, steps_per_epoch=10_000, step_s=0.5)
    assert projection.train_s == 80 * 10_000 * 0.5
    assert projection.eval_s is None
    assert projection.total_s == 400_000


def test_project_adds_one_evaluation_per_epoch_once_measured():
    projection = estimate.project(
        epochs=80, steps_per_epoch=10_000, step_s=0.5, eval_batches=391, eval_batch_s=0.2
    )
    assert projection.eval_s == pytest.approx(80 * 391 * 0.2)
    assert projection.total_s == pytest.approx(400_000 + 80 * 391 * 0.2)


@pytest.mark.parametrize(
    "seconds, text",
    [
        (0.25, "0.25 s"),
        (42, "42 s"),
        (245, "4 min 5 s"),
        (11_520, "3 h 12 min"),
        (183_600, "2 d 3 h"),
        (3600, "1 h 0 min"),
    ],
)
def test_duration_shows_the_two_largest_units(seconds, text):
    assert estimate.duration(seconds) == text


def _lines(step_s, device, **cfg):
    cfg = types.SimpleNamespace(**dict(vars(CFG), **cfg))
    projection = estimate.project(
        epochs=cfg.epochs, steps_per_epoch=cfg.steps_per_epoch, step_s=step_s
    )
    return estimate.projection_lines(
        cfg, projection, step_s=step_s, eval_batches=None, eval_batch_s=None, device=device
    )


def test_projection_line_says_evaluation_is_not_included_before_it_ran():
    (line,) = _lines(0.01, "GPU")
    assert line.startswith("Projected run time on this hardware (GPU): 2 h 13 min = 80 epochs")
    assert "evaluation not included" in line


def test_more_than_a_day_on_a_cpu_warns_with_the_cpu_recipe():
    line, warning = _lines(0.5, "CPU")  # 80 x 10,000 x 0.5 s: 4.6 days
    assert warning.startswith("Warning: more than a day on a CPU")
    assert "--preset=builtin" in warning


def test_more_than_a_day_on_a_cpu_on_photos_warns_with_the_photos_recipe():
    line, warning = _lines(0.5, "CPU", builtin_data=False)
    assert warning.endswith("the smaller recipe for CPUs is --preset=photos")


def test_more_than_a_day_on_a_cpu_under_the_photos_recipe_suggests_a_shorter_run():
    line, warning = _lines(0.5, "CPU", builtin_data=False, preset="photos")
    assert warning.endswith("lower --epochs, --steps_per_epoch or the model size")


def test_more_than_a_day_on_a_gpu_does_not_warn():
    assert len(_lines(0.5, "GPU")) == 1


def test_training_flops_are_six_times_the_multiply_adds():
    assert estimate.training_flops_per_image(19_000_000_000) == 114_000_000_000


def test_paper_schedule_divides_its_flops_by_the_used_throughput():
    # 80 epochs x 1,000,000 images x 1e11 FLOPs / (100e12 x 0.5 FLOP/s) = 160,000 s.
    seconds = estimate.paper_schedule_s(1e11, device_tflops=100, utilisation=0.5, images=10**6)
    assert seconds == pytest.approx(160_000)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return train_testutil.tiny_data_dir(tmp_path_factory)


def test_train_prints_the_projection_once(data_dir, tmp_path):
    args = train_testutil.as_flags(
        **dict(train_testutil.TINY_RECIPE, data_dir=data_dir, model_dir=tmp_path / "run")
    )
    returncode, out, err = train_testutil.run("delving.train", args)
    assert returncode == 0, err
    lines = [line for line in out.splitlines() if line.startswith("Projected run time")]
    assert len(lines) == 1, out
    recipe = train_testutil.TINY_RECIPE
    assert f"{recipe['epochs']} epochs x {recipe['steps_per_epoch']} steps" in lines[0]


def test_train_with_verbose_0_prints_no_projection(data_dir, tmp_path, capsys):
    from delving.training import config, loop

    cfg = config.resolve_config(
        **dict(train_testutil.TINY_RECIPE, data_dir=data_dir, model_dir=str(tmp_path / "run"))
    )
    loop.train(cfg, verbose=0)
    assert capsys.readouterr().out == ""
