"""The bundle README names the NVIDIA device plugin when (and only when) the spec has a GPU pool: the AL2023
NVIDIA AMI has the driver but not the plugin, and without it no GPU pod ever schedules."""

from __future__ import annotations

from tests.fixtures.load import fixture

from stackwright.render.readme import render_readme


def test_gpu_pool_needs_the_device_plugin() -> None:
    text = render_readme(fixture("gpu"), [], [])
    assert "nvdp/nvidia-device-plugin" in text
    assert "`gpu`" in text.split("NVIDIA Kubernetes device plugin")[0].rsplit("GPU pools", 1)[1]


def test_no_gpu_pool_no_device_plugin() -> None:
    assert "device plugin" not in render_readme(fixture("streaming"), [], [])
