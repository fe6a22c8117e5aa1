from neuroplex.testing import ConformanceSuite


class TestConformance(ConformanceSuite):
    distribution = "neuroplex-layers"
