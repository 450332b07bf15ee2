"""Small real artifacts for the device-agent tests: one tiny CNN exported to every local runtime.

The model is small enough to export in seconds and to run in well under a millisecond, but it
has a few MB of float32 weights so that a 1 MB memory cap is certainly exceeded.
"""

from __future__ import annotations

from pathlib import Path

INPUT_SHAPE = (1, 3, 32, 32)
BACKEND_SUFFIX = {"onnx": ".onnx", "litert": ".tflite", "executorch": ".pte"}


def tiny_model():
    """A conv + linear net: ~1M float32 weights (~4 MB), a few MFLOPs per inference."""
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(8),
        torch.nn.Flatten(),
        torch.nn.Linear(16 * 8 * 8, 1024),
        torch.nn.ReLU(),
        torch.nn.Linear(1024, 10),
    ).eval()


def export_tiny(backend: str, out_dir: Path) -> Path:
    """Export the tiny model for one backend into ``out_dir``; return the artifact path."""
    import torch

    model, x = tiny_model(), torch.randn(*INPUT_SHAPE)
    path = Path(out_dir) / f"tiny{BACKEND_SUFFIX[backend]}"
    if backend == "onnx":
        torch.onnx.export(model, (x,), str(path), dynamo=True, external_data=False)
    elif backend == "litert":
        import litert_torch

        litert_torch.convert(model, (x,)).export(str(path))
    elif backend == "executorch":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        program = to_edge_transform_and_lower(
            torch.export.export(model, (x,)), partitioner=[XnnpackPartitioner()]
        ).to_executorch()
        path.write_bytes(program.buffer)
    else:
        raise ValueError(backend)
    return path


def export_all(out_dir: Path) -> dict[str, Path]:
    """Every local backend's artifact of the tiny model."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return {backend: export_tiny(backend, out_dir) for backend in BACKEND_SUFFIX}


if __name__ == "__main__":  # python -m tests.agent_fixtures DIR: build the artifacts by hand
    import sys

    for name, p in export_all(Path(sys.argv[1])).items():
        print(name, p, p.stat().st_size)
