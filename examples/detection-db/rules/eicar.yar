/*
    The EICAR anti-malware test file: a harmless 68-byte string that every scanner agrees to
    detect. The string is written in hex below, so that this rule file is not itself taken
    for the test file by a scanner.
*/

rule EICAR_Test_File
{
    meta:
        author = "Overt example detection team"
        description = "EICAR anti-malware test file (harmless)"
        reference = "https://www.eicar.org/download-anti-malware-testfile/"
        date = "2024-03-04"
        version = 2
        id = "80b44cee-781e-403c-9dae-6f5e8e5d75dd"
        hash = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"
        severity = "informational"

    strings:
        // X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*
        $eicar = {
            58 35 4F 21 50 25 40 41 50 5B 34 5C 50 5A 58 35 34 28 50 5E 29 37 43 43 29 37 7D 24
            45 49 43 41 52 2D 53 54 41 4E 44 41 52 44 2D 41 4E 54 49 56 49 52 55 53 2D 54 45 53
            54 2D 46 49 4C 45 21 24 48 2B 48 2A
        }

    condition:
        // The file must start with the string; up to 60 bytes of trailing whitespace are allowed.
        $eicar at 0 and filesize <= 128
}
