import torch


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
