/*
    PowerShell "download cradles": one-liners that fetch a script from the network and run it
    in memory, e.g. IEX (New-Object Net.WebClient).DownloadString('http://...').
*/

rule PowerShell_Download_Cradle
{
    meta:
        author = "Overt example detection team"
        description = "PowerShell one-liner that downloads and executes a script in memory"
        reference = "https://attack.mitre.org/techniques/T1059/001/"
        date = "2024-04-11"
        version = 3
        id = "9aeef9a6-f192-4c08-bd4e-e43bd7befbf1"
        mitre_attack = "T1059.001, T1105"
        // sha256 of the synthetic one-line sample quoted in the header comment
        hash = "21919044e97c191c92f7d0a11522abbc43616ad985b410542f2941af3050ac59"
        severity = "medium"

    strings:
        $dl1 = "Net.WebClient" ascii wide nocase
        $dl2 = ".DownloadString(" ascii wide nocase
        $dl3 = ".DownloadData(" ascii wide nocase
        $dl4 = "Invoke-WebRequest" ascii wide nocase
        $dl5 = "Start-BitsTransfer" ascii wide nocase
        $dl6 = /\biwr\s+['"]?https?:\/\// ascii nocase
        $ex1 = "IEX" ascii wide nocase fullword
        $ex2 = "Invoke-Expression" ascii wide nocase
        $ex3 = /\|\s*iex\b/ ascii nocase

    condition:
        filesize < 1MB and 1 of ($dl*) and 1 of ($ex*)
}
