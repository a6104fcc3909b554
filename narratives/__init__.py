"""narratives: recorded spoken stories to reviewed, scheduled campaign broadcasts.

Data flows one way through the stages (see README):
recording -> Narrative -> Transcript -> Analysis -> Video -> Draft -> Delivery.
"""

__version__ = "0.1.0"
