"""The bench's rate over each tenth of a load (how ingest slows as the store grows)."""

from tools.bench import by_tenth


def test_a_steady_load_has_the_same_rate_in_every_tenth():
    marks = [(events, events / 1000) for events in range(0, 10_001, 500)]
    assert by_tenth(marks) == [1000.0] * 10


def test_a_load_that_slows_shows_it_in_its_last_tenths():
    marks, seconds = [(0, 0.0)], 0.0
    for batch in range(1, 21):  # 20 batches of 500 events, the second half twice as slow
        seconds += 0.5 if batch <= 10 else 1.0
        marks.append((batch * 500, seconds))
    assert by_tenth(marks) == [1000.0] * 5 + [500.0] * 5


def test_batches_larger_than_a_tenth_give_fewer_figures():
    assert by_tenth([(0, 0.0), (600, 1.0), (1000, 2.0)]) == [600.0, 400.0]
    assert by_tenth([(0, 0.0)]) == []
