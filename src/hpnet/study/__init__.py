"""A predictability study with real people: protocol and item bank, participants, score.

    from hpnet.study import StudySettings, create_study, Study, score_study
    create_study("studies/demo", StudySettings(networks=["runs/demo", "runs/demo/plain"], learn=2, test=6))
    study = Study("studies/demo")
    token = study.invite(1)[0]            # a participant's link: /p/TOKEN
    score_study(study).networks["A"]["person"]

:mod:`.protocol` draws the item bank once (``study.sqlite``, :mod:`.store`); :mod:`.session` is what
a participant does (consent, the current item, answers, ratings); :mod:`.score` scores it with
intervals over people and items; :mod:`.app` serves it (``hpnet study serve``, on waitress).
"""
from .protocol import CONDITIONS, StudySettings, create_study
from .score import answers_csv, score_study
from .session import Study

__all__ = ["CONDITIONS", "Study", "StudySettings", "answers_csv", "create_study", "score_study"]
