from betasched.training.model import GROUPS, ResNet18, count_parameters


def test_parameter_count_at_width_64():
    assert count_parameters(ResNet18(64)) == 11_173_962


def test_group_names_and_shares():
    model = ResNet18(64)
    names = [n for n, _ in model.named_children()]
    assert tuple(names) == GROUPS
    total = count_parameters(model)
    share = {n: count_parameters(m) / total for n, m in model.named_children()}
    assert round(share["layer4"], 3) == 0.751
    assert round(share["layer3"], 3) == 0.188
