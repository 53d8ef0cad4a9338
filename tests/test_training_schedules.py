"""delving/training/schedules.py: the learning-rate schedules (the warm-up is in
tests/test_train_recipe.py)."""

from delving.training.optimizer import LearningRateSchedule


def test_plateau_schedule_divides_by_ten_twice():
    s = LearningRateSchedule(0.01, kind="plateau", patience=2, min_delta=0.0)
    errors = [0.9, 0.8, 0.8, 0.8, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7]
    rates = []
    for epoch, err in enumerate(errors):
        s.end_epoch(epoch, err)
        rates.append(round(s.rate(), 8))
    assert rates == [0.01, 0.01, 0.01, 0.001, 0.001, 0.001, 0.0001, 0.0001, 0.0001, 0.0001, 0.0001]


def test_step_schedule():
    s = LearningRateSchedule(0.1, kind="step", decay_epochs=(2, 4))
    rates = []
    for epoch in range(6):
        rates.append(round(s.rate(), 8))
        s.end_epoch(epoch, None)
    assert rates == [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
