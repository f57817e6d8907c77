"""A lens finder shortcutgates did not write: asinh stretch inside, trained briefly, exported three ways."""

import json
import sys

import torch

from make_model_def import Finder  # the one definition, also imported when the .pt2 / fixture routes load it

from shortcutgates.data.manifest import load_images, read_manifest

DATA = sys.argv[1]
torch.manual_seed(0)


frame = read_manifest(DATA).frame
frame = frame[frame.split == "test"]
images, _ = load_images(frame)
x, y = torch.from_numpy(images), torch.tensor(frame.label.to_numpy(), dtype=torch.float32)
model = Finder()
opt = torch.optim.Adam(model.parameters(), 3e-3)
for _step in range(60):
    opt.zero_grad()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
    loss.backward()
    opt.step()
print("train loss", float(loss))
model.eval()
torch.save(model.state_dict(), "finder_weights.pt")
contract = {
    "bands": ["g", "r", "z"],
    "units": "nanomaggies",
    "preprocess": "none",
    "stamp_size": None,
    "layout": "NCHW",
    "output": "logit",
}
sample = torch.zeros(2, 3, 48, 48)
batch = torch.export.Dim("batch", min=1)
torch.onnx.export(
    model,
    (sample,),
    "finder.onnx",
    dynamo=True,
    external_data=True,
    input_names=["images"],
    output_names=["logit"],
    dynamic_shapes={"x": {0: batch}},
)
program = torch.export.export(model, (sample,), dynamic_shapes={"x": {0: batch}})
torch.export.save(program, "finder.pt2")
for f in ("finder.onnx", "finder.pt2"):
    json.dump(contract, open(f + ".json", "w"))
