from pathlib import Path

import pytest

from qingfin.training.cli import main
from qingfin.training.config import ConfigError, load_config, parse_override, to_toml


def test_overrides_and_types(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[train]\nepochs = 2\n[model]\npooling = "cls"\n')
    config, applied = load_config(path, ["train.learning_rate=3e-5", "model.base=/some/dir", "data.augment=true"])
    assert config.train.epochs == 2.0 and isinstance(config.train.epochs, float)
    assert config.model.pooling == "cls" and config.model.base == "/some/dir" and config.data.augment is True
    assert applied == ["train.learning_rate = 3e-05", "model.base = '/some/dir'", "data.augment = True"]


def test_unknown_keys_and_bad_types_are_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown key train.epoch"):
        load_config(None, ["train.epoch=3"])
    with pytest.raises(ConfigError, match=r"unknown section \[trian\]"):
        load_config(None, ["trian.epochs=3"])
    with pytest.raises(ConfigError, match="train.batch_size: expected int"):
        load_config(None, ["train.batch_size=big"])
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("epochs=3")


def test_resolved_config_round_trips(tmp_path):
    config, _ = load_config(None, ["train.seed=9", 'model.base="a \\"quoted\\" dir"'])
    path = tmp_path / "resolved.toml"
    path.write_text(to_toml(config))
    again, _ = load_config(path)
    assert again == config


def test_train_prints_overrides_and_refuses_unknown(capsys):
    with pytest.raises(ConfigError):
        main(["train", "--set", "train.nope=1"])


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "training" / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_config_loads_and_names_valid_teachers(path):
    from qingfin.training.distill import OUT_OF_FOLD_TFIDF, teacher_directories

    config = load_config(path, [])[0]
    if config.train.teacher:  # the release chain: each entry a run's model/ or the TF-IDF teacher
        entries = teacher_directories(config.train.teacher)
        assert all(str(e) == OUT_OF_FOLD_TFIDF or e.name == "model" for e in entries), entries
