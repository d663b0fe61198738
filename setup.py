"""Packaging for bts_nb: everything is read from settings.ini (the nbdev 2 convention)."""
import shlex
from configparser import ConfigParser
import setuptools

config = ConfigParser(delimiters=['='])
config.read('settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

requirements = shlex.split(cfg.get('requirements', ''))
dev_requirements = shlex.split(cfg.get('dev_requirements', ''))
console_scripts = cfg.get('console_scripts', '').split()
lib_path = cfg['lib_path']

setuptools.setup(
    name=cfg['lib_name'],
    version=cfg['version'],
    description=cfg['description'],
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    author=cfg['author'],
    author_email=cfg['author_email'],
    license='Apache Software License 2.0',
    url=cfg['git_url'],
    keywords=cfg['keywords'],
    python_requires='>=' + cfg['min_python'],
    packages=setuptools.find_packages(include=[lib_path, lib_path + '.*']),
    include_package_data=True,
    install_requires=requirements,
    extras_require={'dev': dev_requirements},
    entry_points={'console_scripts': console_scripts,
                  'nbdev': [f'{lib_path}={lib_path}._modidx:d']},
    zip_safe=False,
)
