"""The real inputs of the MLPerf Tiny models in ../shared/models/data, in the ONNX (NCHW) layout."""

from __future__ import annotations

import numpy as np

from conftest import MODELS, require

ONNX = {
    "ic01": "ic01_resnet8_fp32.onnx",
    "vww01": "vww01_mobilenetv1_025_fp32.onnx",
    "kws01": "kws01_dscnn_fp32.onnx",
    "ad01": "ad01_fc_autoencoder_fp32.onnx",
    "sww01": "sww01_dscnn_streaming_fp32.onnx",
}


def model_path(key: str):
    return require(MODELS / "onnx" / ONNX[key], f"MLPerf Tiny model {ONNX[key]}")


def real_data(key: str) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """({input name: float32 array (N, ...)}, labels or None) for one model."""
    d = require(MODELS / "data", "MLPerf Tiny real data folder")
    if key == "ic01":
        z = np.load(d / "ic01_real_images.npz")
        x = z["images_u8_nhwc"].astype(np.float32).transpose(0, 3, 1, 2)
        return {"input_1": x}, None
    if key == "vww01":
        z = np.load(d / "vww01_real_images.npz")
        x = z["images_u8_nhwc"].astype(np.float32).transpose(0, 3, 1, 2) / 255.0
        g = (z["repo_gray_minus1_1"].astype(np.float32) + 1) / 2
        x = np.concatenate([x, np.broadcast_to(g, (1, 3, 96, 96))]).astype(np.float32)
        return {"input_1": x}, None
    if key == "kws01":
        z = np.load(d / "kws01_repo_sample.npz")
        return {"input_1": z["x_float_nchw"].astype(np.float32)}, None
    if key == "ad01":
        z = np.load(d / "ad01_toycar_normal_id01_00000000.npz")
        return {"input_1": z["windows"].astype(np.float32)}, None
    if key == "sww01":
        z = np.load(d / "sww01_calibration_samples.npz")
        x = z["specs"].astype(np.float32).transpose(0, 3, 1, 2)
        return {"input_1": x}, z["labels"].astype(np.int64)
    raise KeyError(key)
