"""The feature map's projection, labeled neighbours, and lasso geometry."""

import numpy as np

from rbvet.core.learn.feature_space import nearest_labeled, points_in_polygon, project_2d


def test_projection_is_the_two_leading_principal_axes():
    rng = np.random.default_rng(0)
    # Variance 25 along one direction, 4 along another, 0.01 elsewhere, in 10-D.
    basis = np.linalg.qr(rng.normal(size=(10, 10)))[0]
    latent = rng.normal(size=(500, 10)) * np.array([5.0, 2.0] + [0.1] * 8)
    features = latent @ basis.T + 3.0
    features[7] = np.nan
    coordinates = project_2d(features)
    assert np.isnan(coordinates[7]).all()
    good = np.delete(np.arange(500), 7)
    eigenvalues = np.sort(np.linalg.eigvalsh(np.cov(features[good].T)))[::-1]
    np.testing.assert_allclose(coordinates[good].var(axis=0, ddof=1), eigenvalues[:2], rtol=1e-3)
    # The first axis is the direction of largest spread: it matches the latent's first column.
    correlation = np.corrcoef(coordinates[good, 0], latent[good, 0])[0, 1]
    assert abs(correlation) > 0.99
    np.testing.assert_array_equal(project_2d(features), coordinates)  # deterministic


def test_nearest_labeled_are_the_closest_labeled_others():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(40, 5))
    labels = np.full(40, -1)
    labels[rng.choice(40, 15, replace=False)] = rng.integers(0, 2, 15)
    labels[3] = 1  # the object itself is labeled: still not its own neighbour
    neighbours, distances = nearest_labeled(features, labels, 3, k=4)
    brute = sorted(
        (np.linalg.norm(features[i] - features[3]), i)
        for i in range(40)
        if labels[i] >= 0 and i != 3
    )[:4]
    np.testing.assert_array_equal(neighbours, [i for _, i in brute])
    np.testing.assert_allclose(distances, [d for d, _ in brute])
    none, _ = nearest_labeled(features, np.full(40, -1), 3)
    assert len(none) == 0


def test_points_in_a_concave_polygon():
    # An L shape: the unit square's bottom row and left column of a 2 x 2 square.
    polygon_x = [0, 2, 2, 1, 1, 0]
    polygon_y = [0, 0, 1, 1, 2, 2]
    x = np.array([0.5, 1.5, 0.5, 1.5, 3.0, np.nan])
    y = np.array([0.5, 0.5, 1.5, 1.5, 0.5, 0.5])
    np.testing.assert_array_equal(
        points_in_polygon(x, y, polygon_x, polygon_y), [True, True, True, False, False, False]
    )
