"""The original course's PyTorch models, written from /work/shared/ORIGINAL_COURSE.md, for parity tests.

Only tests import this module, after `pytest.importorskip("torch")`. Module names are those the
original notebooks would use, one of the namings `course.port` accepts for each model:
  MLP          hidden_layers.0-2, output        (the "saving and loading" notebook's fc_model.Network)
  SimpleCNN    conv1, conv2, fc1, fc2, fc3      (the CIFAR-10 notebook)
  LeNet5       feature_extractor.*, classifier.* (nn.Sequential blocks)
  LeNet5ReLU   conv1, conv2, fc1, fc2, fc3
  AlexNet      features.*, classifier.*         (torchvision's layout)
Every model takes NCHW batches and returns what the original returned (log-probabilities, tanh
outputs or logits).
"""

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    """784 -> 256 -> 128 -> 64 -> 10, ReLU and dropout 0.2 after each hidden layer, log-softmax output."""

    def __init__(self, in_features=784, hidden=(256, 128, 64), num_classes=10, dropout=0.2):
        super().__init__()
        sizes = (in_features, *hidden)
        self.hidden_layers = nn.ModuleList([nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])])
        self.output = nn.Linear(sizes[-1], num_classes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        x = x.view(x.shape[0], -1)
        for layer in self.hidden_layers:
            x = self.dropout(F.relu(layer(x)))
        return F.log_softmax(self.output(x), dim=1)


class SimpleCNN(nn.Module):
    """conv 3->16 -> pool -> conv 16->25 -> pool -> fc 1600->128 -> fc 128->64 -> dropout 0.4 -> fc 64->10."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 25, 3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(25 * 8 * 8, 128)
        self.fc2 = nn.Linear(128, 64)
        self.fc3 = nn.Linear(64, 10)
        self.dropout = nn.Dropout(0.4)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(-1, 25 * 8 * 8)
        x = F.relu(self.fc1(x))
        x = self.dropout(F.relu(self.fc2(x)))
        return self.fc3(x)


class LeNet5(nn.Module):
    """C1 6@5x5 -> tanh -> pool -> C3 16@5x5 -> tanh -> pool -> C5 120@5x5 -> tanh -> F6 84 -> tanh -> 10 -> tanh."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.feature_extractor = nn.Sequential(
            nn.Conv2d(1, 6, 5), nn.Tanh(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.Tanh(), nn.MaxPool2d(2),
            nn.Conv2d(16, 120, 5), nn.Tanh(),
        )
        self.classifier = nn.Sequential(nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, num_classes), nn.Tanh())

    def forward(self, x):
        return self.classifier(torch.flatten(self.feature_extractor(x), 1))


class LeNet5ReLU(nn.Module):
    """C1 -> ReLU -> pool -> C3 -> ReLU -> pool -> fc 400->120 -> ReLU -> fc 84 -> ReLU -> fc 10 -> log-softmax."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(-1, 16 * 5 * 5)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return F.log_softmax(self.fc3(x), dim=1)


class AlexNet(nn.Module):
    """Five convolutions, three 3x3/2 max-pools, dropout 0.5 -> fc 9216->4096 -> dropout -> fc 500 -> fc 10."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, 11, stride=4), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(96, 256, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(),
            nn.Dropout(0.5), nn.Linear(4096, 500), nn.ReLU(),
            nn.Linear(500, num_classes),
        )

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))
