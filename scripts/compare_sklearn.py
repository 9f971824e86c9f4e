#!/usr/bin/env python3
"""scikit-learn's LogisticRegression on the digits split that examples/softmax_regression.rs
uses (data/digits.csv; row i is a test row when i % 5 == 4), pixels scaled to [0, 1]: the
accuracy the GPU-trained softmax regression is compared with. Needs scikit-learn
(`pip install scikit-learn`)."""

import csv
import pathlib

from sklearn.linear_model import LogisticRegression

root = pathlib.Path(__file__).resolve().parent.parent
rows = list(csv.reader(open(root / "data" / "digits.csv")))[1:]
train = [r for i, r in enumerate(rows) if i % 5 != 4]
test = [r for i, r in enumerate(rows) if i % 5 == 4]


def split(part):
    return [[float(v) / 16.0 for v in r[:64]] for r in part], [int(r[64]) for r in part]


x, y = split(train)
x_test, y_test = split(test)
model = LogisticRegression(max_iter=5000).fit(x, y)
print(f"scikit-learn LogisticRegression: test accuracy {100 * model.score(x_test, y_test):.2f} %")

from sklearn.multiclass import OneVsRestClassifier

ovr = OneVsRestClassifier(LogisticRegression(max_iter=5000)).fit(x, y)
print(f"scikit-learn one-vs-rest LogisticRegression: test accuracy {100 * ovr.score(x_test, y_test):.2f} %")
