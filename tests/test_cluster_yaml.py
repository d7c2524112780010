"""cluster.yaml is a valid Ray autoscaler config (checked offline, no cloud access)."""

import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from tests.conftest import ROOT


def test_cluster_yaml_passes_ray_autoscaler_validation():
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    validate_config(prepare_config(config))
    assert config["head_node_type"] in config["available_node_types"]


def test_cluster_yaml_installs_this_version_on_every_node():
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    install = config["setup_commands"][0]
    assert "pip install" in install and f"__version__ != '{version}'" in install
    assert config["file_mounts"] == {"~/gtaray": "."}
    text = (ROOT / "cluster.yaml").read_text()
    assert "AWS_SECRET" not in text and "aws_secret" not in text.lower()
