"""Verified matches: local features stored beside the embeddings, and a geometric re-rank.

``features`` extracts and stores ORB keypoints per item (``index --local``);
``rerank`` matches them between a query and its top global candidates, fits a
similarity transform with RANSAC and folds the inlier count into the score.
"""
