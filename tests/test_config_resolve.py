from translora.config import load_config, resolve_config


def test_partial_dict_is_merged_over_its_profile():
    cfg = resolve_config({"profile": "paper", "filter": {"n_keep": 5}})
    assert cfg.filter.n_keep == 5 and cfg.filter.max_generated == load_config("paper").filter.max_generated
    full = load_config("cpu").model_dump(mode="json")
    assert resolve_config(full) == load_config("cpu")
