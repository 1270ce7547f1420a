from setuptools import find_packages, setup

setup(
    name="desa2va",
    version="0.1.0",
    description="DeSa2VA / Sa2VA: grounded image and video understanding with InternVL2.5 + SAM-2",
    packages=find_packages(include=["projects", "projects.*"]),
    package_data={"projects.desa2va": ["models/grounding/configs/*.yaml"]},
    python_requires=">=3.10",
)
