"""Training layer (torch, torchvision): CIFAR-10 tensors, ResNet-18, the engine, data parallelism
and resumable checkpoints. Imports the core, never analysis or pipeline."""
