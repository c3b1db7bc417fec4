import torch

# Tests run two pytest workers on two cores: one torch thread each avoids oversubscription.
torch.set_num_threads(1)
