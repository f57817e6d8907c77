"""A lens finder shortcutgates did not write: asinh stretch inside, trained briefly, exported three ways."""
import json
import sys

import torch

from shortcutgates.manifest import load_images, read_manifest

DATA = sys.argv[1]
torch.manual_seed(0)


class Finder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = torch.nn.Conv2d(8, 8, 3, padding=1, stride=2)
        self.head = torch.nn.Linear(8, 1)

    def forward(self, x):
        x = torch.asinh(x / 0.01)
        x = torch.relu(self.c2(torch.relu(self.c1(x))))
        return self.head(x.amax(dim=(2, 3)))[:, 0]


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
contract = {"bands": ["g", "r", "z"], "units": "nanomaggies", "preprocess": "none", "stamp_size": None,
            "layout": "NCHW", "output": "logit"}
sample = torch.zeros(2, 3, 48, 48)
batch = torch.export.Dim("batch", min=1)
torch.onnx.export(model, (sample,), "finder.onnx", dynamo=True, external_data=True,
                  input_names=["images"], output_names=["logit"], dynamic_shapes={"x": {0: batch}})
program = torch.export.export(model, (sample,), dynamic_shapes={"x": {0: batch}})
torch.export.save(program, "finder.pt2")
for f in ("finder.onnx", "finder.pt2"):
    json.dump(contract, open(f + ".json", "w"))
